"""Checkpoints: one HDF5 file per checkpoint, written atomically, the last K kept.

Layout of ``<dir>/ckpt-<step:09d>.h5``::

    attrs   format, mpidml version, step, epoch, step_in_epoch, world_size,
            model (JSON: kind, d, dtype, nparams, ...), config (JSON), created
    /state/<name>          shared state, identical on every rank (parameters,
                           optimizer buffers, algorithm centre variables, ...)
    /rank/<r>/<name>       per-rank state where ranks differ (local models, residuals, ...)
    every dataset carries a ``sha256`` attribute of its bytes

Writing: rank 0 gathers per-rank state and writes to a temporary file beside the
target, fsyncs and renames it (``runtime.atomic``): a crash mid-write leaves the
previous checkpoint intact. Only after a successful rename are checkpoints beyond
the newest ``keep`` deleted. Loading: the newest checkpoint that opens and whose
checksums match is used; damaged ones are reported and skipped, never silently.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import time

import h5py
import numpy as np

from . import __version__
from .runtime.atomic import atomic_path
from .runtime.errors import MpidmlError

__all__ = ["FORMAT", "Checkpoint", "Checkpointer", "write_checkpoint", "read_checkpoint", "latest_checkpoint",
           "list_checkpoints", "check_compatible"]

FORMAT = 1
_NAME = re.compile(r"ckpt-(\d{9})\.h5$")


class Checkpoint(dict):
    """A loaded checkpoint: ``meta`` (attrs), ``state`` (shared arrays), ``per_rank``
    (list over the writing ranks of dicts of arrays), ``path``."""

    @property
    def meta(self) -> dict:
        return self["meta"]

    @property
    def state(self) -> dict[str, np.ndarray]:
        return self["state"]

    @property
    def per_rank(self) -> list[dict[str, np.ndarray]]:
        return self["per_rank"]

    @property
    def path(self) -> str:
        return self["path"]


def _digest(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def list_checkpoints(directory: str) -> list[tuple[int, str]]:
    """(step, path) of every checkpoint file in ``directory``, oldest first."""
    found = []
    for path in glob.glob(os.path.join(directory, "ckpt-*.h5")):
        m = _NAME.search(path)
        if m:
            found.append((int(m.group(1)), path))
    return sorted(found)


def write_checkpoint(directory: str, step: int, meta: dict, state: dict[str, np.ndarray],
                     per_rank: list[dict[str, np.ndarray]] | None = None, keep: int = 3,
                     crash_hook=None) -> str:
    """Write one checkpoint atomically (call on ONE rank, e.g. rank 0, with the gathered
    per-rank state); prune to the newest ``keep``. Returns the path.

    ``crash_hook(tmp_path)``, if given, is called after the data is written but before
    the rename (fault injection: a crash there must leave the previous checkpoint)."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"ckpt-{step:09d}.h5")
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = FORMAT
            f.attrs["mpidml_version"] = __version__
            f.attrs["created"] = time.time()
            f.attrs["step"] = int(step)
            for key, value in meta.items():
                f.attrs[key] = json.dumps(value) if isinstance(value, (dict, list)) else value
            g = f.create_group("state")
            for name, arr in state.items():
                g.create_dataset(name, data=arr).attrs["sha256"] = _digest(np.asarray(arr))
            r = f.create_group("rank")
            for i, arrays in enumerate(per_rank or []):
                gi = r.create_group(str(i))
                for name, arr in arrays.items():
                    gi.create_dataset(name, data=arr).attrs["sha256"] = _digest(np.asarray(arr))
        if crash_hook is not None:
            crash_hook(tmp)
    for _, old in list_checkpoints(directory)[:-keep] if keep > 0 else []:
        try:
            os.unlink(old)
        except FileNotFoundError:
            pass
    return path


def read_checkpoint(path: str) -> Checkpoint:
    """Load and verify one checkpoint; ``MpidmlError`` naming the file if damaged."""
    try:
        with h5py.File(path, "r", locking=False) as f:
            if f.attrs.get("format") != FORMAT:
                raise MpidmlError(f"{path}: not an mpidml checkpoint of format {FORMAT} "
                                  f"(format attribute {f.attrs.get('format')!r})")
            meta = {}
            for key, value in f.attrs.items():
                if isinstance(value, str) and value[:1] in "{[":
                    value = json.loads(value)
                elif isinstance(value, np.generic):
                    value = value.item()
                meta[key] = value

            def load(group) -> dict[str, np.ndarray]:
                out = {}
                for name, ds in group.items():
                    arr = ds[()]
                    if ds.attrs.get("sha256") != _digest(np.asarray(arr)):
                        raise MpidmlError(f"{path}: dataset {ds.name} fails its checksum (corrupt file)")
                    out[name] = arr
                return out

            state = load(f["state"])
            per_rank = [load(f["rank"][k]) for k in sorted(f["rank"], key=int)]
    except MpidmlError:
        raise
    except (OSError, KeyError) as exc:
        raise MpidmlError(f"{path}: cannot read checkpoint ({exc})") from None
    return Checkpoint(meta=meta, state=state, per_rank=per_rank, path=path)


def latest_checkpoint(directory: str, log=None) -> Checkpoint | None:
    """The newest readable, verified checkpoint in ``directory`` (None if there is none).
    Damaged newer files are reported through ``log`` and skipped."""
    for _, path in reversed(list_checkpoints(directory)):
        try:
            return read_checkpoint(path)
        except MpidmlError as exc:
            if log:
                log(f"warning: skipping damaged checkpoint: {exc}")
    return None


def check_compatible(ckpt: Checkpoint, model: dict) -> None:
    """Raise ``MpidmlError`` if ``ckpt`` was written for a different model."""
    have = ckpt.meta.get("model", {})
    diffs = [f"{k} {have.get(k)!r} in the checkpoint vs {v!r} now" for k, v in model.items()
             if have.get(k) != v]
    if diffs:
        raise MpidmlError(f"{ckpt.path} was written for another model: " + "; ".join(diffs))


class Checkpointer:
    """Collective checkpointing for a training run on ``comm``.

    Rank 0 writes (shared state is identical on every rank in synchronous training);
    every rank learns whether it worked (``fail_together``), so a full disk or an
    unwritable directory stops all ranks with one message and the previous checkpoint
    stays. Every rank reads on resume (the directory must be on a shared file system).
    """

    def __init__(self, comm, directory: str, keep: int, model: dict, config: dict, fault=None):
        self.comm, self.directory, self.keep = comm, directory, keep
        self.model, self.config, self.fault = model, config, fault
        self.last_path: str | None = None

    def check_writable(self) -> None:
        """Collective: create the directory and prove it is writable, before training."""
        from .runtime.errors import fail_together

        def probe():
            if self.comm.Get_rank() == 0:
                os.makedirs(self.directory, exist_ok=True)
                # temp files of a writer that was killed mid-write (never a valid checkpoint)
                for stale in glob.glob(os.path.join(self.directory, ".ckpt-*.tmp")):
                    os.unlink(stale)
                with atomic_path(os.path.join(self.directory, ".write-test")) as tmp:
                    with open(tmp, "w") as fh:
                        fh.write("ok")
                os.unlink(os.path.join(self.directory, ".write-test"))

        fail_together(self.comm, f"checking the checkpoint directory {self.directory}", probe)

    def resume(self, log) -> Checkpoint | None:
        """Collective: the newest valid, compatible checkpoint (None if the directory has none)."""
        from .runtime.errors import fail_together

        def load():
            ck = latest_checkpoint(self.directory, log=log if self.comm.Get_rank() == 0 else None)
            if ck is None and list_checkpoints(self.directory):
                raise MpidmlError(f"{self.directory}: {len(list_checkpoints(self.directory))} "
                                  "checkpoint file(s) but none is readable; refusing to start over "
                                  "(move them away to start fresh)")
            if ck is not None:
                check_compatible(ck, self.model)
            return ck

        ck = fail_together(self.comm, f"resuming from {self.directory}", load)
        steps = self.comm.allgather(ck.meta["step"] if ck else None)
        if len(set(steps)) != 1:
            raise MpidmlError(f"ranks found different checkpoints in {self.directory} ({steps}): "
                              "is it on a shared file system?")
        self.last_path = ck.path if ck else None
        return ck

    def save(self, step: int, meta: dict, state: dict[str, np.ndarray],
             rank_state: dict[str, np.ndarray] | None = None) -> str:
        """Collective: write checkpoint ``step`` from rank 0 (``state`` as rank 0 has
        it; ``rank_state``, if any rank has one, gathered from every rank); returns its path."""
        from .runtime.errors import fail_together

        hook = self.fault.checkpoint_hook() if (self.fault and self.comm.Get_rank() == 0) else None
        gathered = self.comm.gather(rank_state or {}, root=0)

        def write():
            if self.comm.Get_rank() == 0:
                per_rank = gathered if any(gathered) else None
                return write_checkpoint(self.directory, step,
                                        {"model": self.model, "config": self.config,
                                         "world_size": self.comm.Get_size(), **meta},
                                        state, per_rank=per_rank, keep=self.keep, crash_hook=hook)
            return None

        path = fail_together(self.comm, f"writing checkpoint {step} to {self.directory}", write)
        self.last_path = self.comm.bcast(path, root=0)
        return self.last_path
