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

__all__ = ["FORMAT", "Checkpoint", "write_checkpoint", "read_checkpoint", "latest_checkpoint",
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
