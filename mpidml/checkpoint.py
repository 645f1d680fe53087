"""Checkpoints: one HDF5 file per checkpoint, written atomically, the last K of the run kept;
a checkpoint directory belongs to one run.

Layout of ``<dir>/ckpt-<step:09d>.h5``::

    attrs   format, mpidml version, step, epoch, step_in_epoch, world_size, created,
            run_id, config_sha256, model (JSON: kind, d, dtype, nparams, ...),
            config (JSON), data (JSON: path, files, shape, sha256 fingerprint),
            contents (JSON: dataset name -> sha256), attrs_sha256
    /state/<name>          shared state, identical on every rank (parameters,
                           optimizer buffers, algorithm centre variables, ...)
    /rank/<r>/<name>       per-rank state where ranks differ (local models, residuals, ...)
    every dataset carries a ``sha256`` attribute of its bytes; ``attrs_sha256`` covers
    every other attribute (canonical JSON), so an edited ``step`` reads as damage

Beside them: ``manifest.json`` (the run that owns the directory: run_id, config hash,
host, pid, created, mpidml version; written atomically) and ``.lock`` (``flock``-ed by
rank 0 for the life of the run; holds the holder's host and pid).

Writing: rank 0 gathers per-rank state and writes to a temporary file beside the
target, fsyncs and renames it (``runtime.atomic``): a crash mid-write leaves the
previous checkpoint intact. Only after a successful rename are this run's checkpoints
beyond its newest ``keep`` deleted; other runs' files are never pruned.

Ownership (``Checkpointer.open``):

* one job per directory: a second job finds the lock taken and stops at once (exit 2)
  naming the holder;
* a fresh run into a directory that holds checkpoints refuses, naming them, unless
  ``overwrite``: the old files (and manifest) are then moved into ``replaced-<time>-<pid>/``
  and that folder is deleted once this run's first checkpoint is safely written, so
  resume can never find another run's model at the top level, and a run that dies before
  its first checkpoint leaves the old files recoverable;
* temporary files (``.ckpt-*.tmp``) are swept only when their writer is dead
  (``runtime.atomic.sweep_temp_files``);
* resume takes the newest checkpoint of the manifest's run that reads back intact,
  skipping damaged files and other runs' files with a note naming each, and compares the
  full configuration (``compare_configs``, one table: ``RESUME_RULES``).

Loading elsewhere: ``latest_checkpoint`` gives the newest verified checkpoint of any run.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import json
import os
import re
import secrets
import shutil
import socket
import time
import weakref

import h5py
import numpy as np

from . import __version__
from .runtime.atomic import atomic_path, sweep_temp_files
from .runtime.errors import MpidmlError, fail_together

__all__ = [
    "FORMAT",
    "RESUME_RULES",
    "Checkpoint",
    "Checkpointer",
    "DirectoryLock",
    "attrs_digest",
    "check_compatible",
    "compare_configs",
    "config_digest",
    "data_identity",
    "latest_checkpoint",
    "list_checkpoints",
    "lock_directory",
    "read_checkpoint",
    "read_manifest",
    "select_checkpoint",
    "write_checkpoint",
]

FORMAT = 2          # 2: run identity, data identity, contents and attrs_sha256 (1: read, unverified attrs)
_READABLE = (1, 2)
_NAME = re.compile(r"ckpt-(\d{9})\.h5$")
MANIFEST = "manifest.json"
LOCK = ".lock"
_TEMPS = (".ckpt-*.tmp", f".{MANIFEST}.*.tmp", ".write-test.*.tmp")

# What a changed setting means for --resume: one table. Keys are TrainConfig fields, except
# "data" (the data identity: path, files, shape, content fingerprint) and "model" (the model
# description: kind, d, dtype, nparams, classes, hidden, optimizer, algo), which replace the
# config's path and model-name strings. A key missing here counts as "allowed" (a new
# setting needs the user's consent until it is classified; tests/test_checkpoint_ownership.py
# checks that every TrainConfig field is).
#   breaking: the checkpoint cannot continue under a new value (step count, row order,
#             state layout or the data change): always refused
#   allowed:  the run can continue, differently from before: needs --resume-with-changes
#             and is recorded in the metrics header (resume_changes)
#   ignored:  does not change what is trained (output, diagnostics, rank layout)
RESUME_RULES: dict[str, str] = {
    **dict.fromkeys(("data", "model", "batch_size", "seed", "partition", "compress"), "breaking"),
    **dict.fromkeys(("epochs", "lr", "lr_schedule", "warmup_steps", "lr_decay_every", "lr_gamma",
                     "lr_reference_batch", "momentum", "l2", "weight_decay", "test", "memory_budget",
                     "stream_in_memory", "tau", "local_after", "easgd_alpha", "easgd_beta", "topology",
                     "topk_ratio", "qsgd_levels", "choco_gamma", "admm_rho", "staleness", "dc_lambda",
                     "control_every", "hogwild_threads"), "allowed"),
    # algo, optimizer, hidden: compared through the model description (model.algo, ...);
    # servers: the rank layout, resumed elastically like a changed rank count
    **dict.fromkeys(("algo", "optimizer", "hidden", "servers", "cache_dir", "metrics", "timeline",
                     "save_model", "config", "inject_fault", "quiet", "verbose", "progress",
                     "progress_every", "checkpoint_dir", "checkpoint_every", "checkpoint_keep", "resume",
                     "overwrite_checkpoints", "resume_with_changes", "stall_timeout", "liveness_timeout",
                     "debug_collectives",
                     "threads", "metrics_every", "eval_every", "on_failure"), "ignored"),
}


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


def _canonical(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def _plain(value):
    """An HDF5 attribute value as the plain Python value it was written from."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, bytes):
        return value.decode()
    return value


def attrs_digest(attrs) -> str:
    """SHA-256 over a canonical JSON of every attribute but ``attrs_sha256`` itself."""
    return hashlib.sha256(_canonical({k: _plain(v) for k, v in attrs.items()
                                      if k != "attrs_sha256"}).encode()).hexdigest()


def list_checkpoints(directory: str) -> list[tuple[int, str]]:
    """(step, path) of every checkpoint file in ``directory``, oldest first."""
    found = []
    for path in glob.glob(os.path.join(directory, "ckpt-*.h5")):
        m = _NAME.search(path)
        if m:
            found.append((int(m.group(1)), path))
    return sorted(found)


def _run_id_of(path: str) -> str | None:
    """The run_id attribute of checkpoint ``path`` (None if absent or unreadable)."""
    try:
        with h5py.File(path, "r", locking=False) as f:
            rid = f.attrs.get("run_id")
    except OSError:
        return None
    return _plain(rid) if rid is not None else None


def write_checkpoint(directory: str, step: int, meta: dict, state: dict[str, np.ndarray],
                     per_rank: list[dict[str, np.ndarray]] | None = None, keep: int = 3,
                     crash_hook=None) -> str:
    """Write one checkpoint atomically (call on ONE rank, e.g. rank 0, with the gathered
    per-rank state); prune the checkpoints of the same run (``meta["run_id"]``; files
    without one count as one legacy run) to the newest ``keep``. Returns the path.

    ``crash_hook(tmp_path)``, if given, is called after the data is written but before
    the rename (fault injection: a crash there must leave the previous checkpoint)."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"ckpt-{step:09d}.h5")
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = FORMAT
            f.attrs["mpidml_version"] = __version__
            f.attrs["created"] = time.time()
            for key, value in meta.items():
                if value is not None:
                    f.attrs[key] = json.dumps(value) if isinstance(value, (dict, list)) else value
            f.attrs["step"] = int(step)
            contents = {}
            groups = [("state", state)] + [(f"rank/{i}", arrays) for i, arrays in enumerate(per_rank or [])]
            f.create_group("rank")
            for where, arrays in groups:
                g = f.require_group(where)
                for name, arr in arrays.items():
                    ds = g.create_dataset(name, data=arr)
                    ds.attrs["sha256"] = contents[ds.name] = _digest(np.asarray(arr))
            f.attrs["contents"] = _canonical(contents)
            f.attrs["attrs_sha256"] = attrs_digest(f.attrs)
        if crash_hook is not None:
            crash_hook(tmp)
    run_id = meta.get("run_id")
    ours = [p for _, p in list_checkpoints(directory) if _run_id_of(p) == run_id]
    for old in ours[:-keep] if keep > 0 else []:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(old)
    return path


def read_checkpoint(path: str) -> Checkpoint:
    """Load and verify one checkpoint; ``MpidmlError`` naming the file if damaged."""
    try:
        with h5py.File(path, "r", locking=False) as f:
            fmt = _plain(f.attrs.get("format"))
            if fmt not in _READABLE:
                raise MpidmlError(f"{path}: not an mpidml checkpoint of format {FORMAT} "
                                  f"(format attribute {fmt!r})")
            contents = None
            if fmt >= 2:
                if f.attrs.get("attrs_sha256") != attrs_digest(f.attrs):
                    raise MpidmlError(f"{path}: attributes fail their checksum (attrs_sha256): "
                                      "corrupt or edited file")
                contents = json.loads(f.attrs["contents"])
            meta = {}
            for key, value in f.attrs.items():
                value = _plain(value)
                if isinstance(value, str) and value[:1] in "{[":
                    value = json.loads(value)
                meta[key] = value
            seen = []

            def load(group) -> dict[str, np.ndarray]:
                out = {}
                for name, ds in group.items():
                    arr = ds[()]
                    digest = _digest(np.asarray(arr))
                    if ds.attrs.get("sha256") != digest or (contents is not None and contents.get(ds.name) != digest):
                        raise MpidmlError(f"{path}: dataset {ds.name} fails its checksum (corrupt file)")
                    seen.append(ds.name)
                    out[name] = arr
                return out

            state = load(f["state"])
            per_rank = [load(f["rank"][k]) for k in sorted(f["rank"], key=int)]
            if contents is not None and sorted(seen) != sorted(contents):
                missing = sorted(set(contents) - set(seen)) or sorted(set(seen) - set(contents))
                raise MpidmlError(f"{path}: datasets differ from the ones it was written with "
                                  f"({', '.join(missing)}): corrupt or edited file")
    except MpidmlError:
        raise
    except (OSError, KeyError, ValueError) as exc:
        raise MpidmlError(f"{path}: cannot read checkpoint ({exc})") from None
    return Checkpoint(meta=meta, state=state, per_rank=per_rank, path=path)


def select_checkpoint(directory: str, run_id: str | None = None) -> tuple[Checkpoint | None, list[tuple[str, str]]]:
    """The newest checkpoint in ``directory`` that reads back intact and, if ``run_id`` is
    given, belongs to that run; plus (path, why) of every newer file skipped on the way."""
    skipped = []
    for _, path in reversed(list_checkpoints(directory)):
        try:
            ck = read_checkpoint(path)
        except MpidmlError as exc:
            skipped.append((path, f"damaged: {exc}"))
            continue
        theirs = ck.meta.get("run_id")
        if run_id is not None and theirs != run_id:
            who = f"run {theirs}" if theirs else "a run without a run id"
            skipped.append((path, f"written by {who}, not by this directory's run {run_id}"))
            continue
        return ck, skipped
    return None, skipped


def latest_checkpoint(directory: str, log=None) -> Checkpoint | None:
    """The newest readable, verified checkpoint in ``directory`` of any run (None if
    there is none). Damaged newer files are reported through ``log`` and skipped."""
    ck, skipped = select_checkpoint(directory)
    for _path, why in skipped:
        if log:
            log(f"warning: skipping damaged checkpoint: {why.removeprefix('damaged: ')}")
    return ck


def check_compatible(ckpt: Checkpoint, model: dict) -> None:
    """Raise ``MpidmlError`` if ``ckpt`` was written for a different model."""
    have = ckpt.meta.get("model", {})
    diffs = [f"{k} {have.get(k)!r} in the checkpoint vs {v!r} now" for k, v in model.items()
             if have.get(k) != v]
    if diffs:
        raise MpidmlError(f"{ckpt.path} was written for another model: " + "; ".join(diffs))


# ---------------------------------------------------------------------------------------
# What a run is: its settings, their hash, its data

def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _show(v) -> str:
    return v if isinstance(v, str) else repr(v)


def compare_configs(saved: dict, now: dict) -> tuple[list[str], list[str]]:
    """(breaking changes, allowed changes) from the settings a checkpoint was written with
    to the settings now, each like ``"batch_size 256 -> 4096"``; ``RESUME_RULES`` says
    which is which (nested dicts such as ``data`` compare per field: ``data.shape``).
    Settings absent on either side (older checkpoints) are not compared."""
    old = _flatten(json.loads(json.dumps(saved)))
    new = _flatten(json.loads(json.dumps(now)))
    breaking, allowed = [], []
    for key in [k for k in old if k in new]:
        rule = RESUME_RULES.get(key.split(".", 1)[0], "allowed")
        if rule != "ignored" and old[key] != new[key]:
            (breaking if rule == "breaking" else allowed).append(f"{key} {_show(old[key])} -> {_show(new[key])}")
    return breaking, allowed


def config_digest(settings: dict) -> str:
    """SHA-256 (hex) of the settings that are not ``ignored`` in ``RESUME_RULES``."""
    kept = {k: v for k, v in settings.items() if RESUME_RULES.get(k, "allowed") != "ignored"}
    return hashlib.sha256(_canonical(json.loads(json.dumps(kept))).encode()).hexdigest()


def _edge_rows(ds: h5py.Dataset) -> list[np.ndarray]:
    """The first and last chunk of rows of ``ds`` (at most ~1 MiB each)."""
    n = ds.shape[0]
    if n == 0:
        return []
    row_bytes = max(1, ds.dtype.itemsize * int(np.prod(ds.shape[1:], dtype=np.int64)))
    rows = ds.chunks[0] if ds.chunks else n
    rows = max(1, min(rows, n, (1 << 20) // row_bytes))
    return [ds[:rows], ds[n - rows:]]


def data_identity(spec) -> dict:
    """What the training data is, cheaply: ``path`` (absolute), ``files``, ``shape`` (n, d)
    and ``sha256``, a fingerprint over every shard file's datasets (/X or /X/data,
    /X/indices, /X/indptr, and /y): their shapes, dtypes and the bytes of their first and
    last chunk (at most ~1 MiB each). It catches another file, a regenerated or appended
    one, a changed head or tail; not an edit confined to the middle of a file."""
    from .data.layout import open_h5, resolve_sources

    paths = resolve_sources(spec)
    h = hashlib.sha256()
    n = d = 0
    for path in paths:
        with open_h5(path) as f:
            sparse = isinstance(f["X"], h5py.Group)
            names = ["X/data", "X/indices", "X/indptr", "y"] if sparse else ["X", "y"]
            shape = tuple(int(s) for s in np.asarray(f["X"].attrs["shape"]).ravel()) if sparse else f["X"].shape
            n, d = n + int(shape[0]), int(shape[1])
            h.update(_canonical([list(shape), sparse]).encode())
            for name in names:
                ds = f[name]
                h.update(_canonical([name, list(ds.shape), ds.dtype.str]).encode())
                for part in _edge_rows(ds):
                    h.update(np.ascontiguousarray(part).tobytes())
    where = os.path.abspath(spec) if isinstance(spec, str) else [os.path.abspath(s) for s in spec]
    return {"path": where, "files": len(paths), "shape": [n, d], "sha256": h.hexdigest()}


# ---------------------------------------------------------------------------------------
# The directory's owner: manifest and lock

def read_manifest(directory: str) -> dict | None:
    """The directory's ``manifest.json`` (None if there is none); ``MpidmlError`` if unreadable."""
    path = os.path.join(directory, MANIFEST)
    try:
        with open(path) as fh:
            manifest = json.load(fh)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise MpidmlError(f"{path}: unreadable manifest ({exc})") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("run_id"), str):
        raise MpidmlError(f"{path}: not an mpidml manifest (no run_id)")
    return manifest


def _write_manifest(directory: str, manifest: dict) -> None:
    with atomic_path(os.path.join(directory, MANIFEST)) as tmp, open(tmp, "w") as fh:
        json.dump(manifest, fh, indent=1, sort_keys=True)
        fh.write("\n")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


class DirectoryLock:
    """An advisory ``flock`` on ``<directory>/.lock``: one job per checkpoint directory.

    Held by one process (rank 0) until ``release()`` or its exit (the kernel drops it even
    after kill -9). The file records the holder's host, pid and start time so a refused
    job can name it; it is never deleted (deleting a lock file races with its next taker).
    On a file system without ``flock`` the lock is not held (``held`` False, ``note`` says so).
    """

    def __init__(self, directory: str):
        self.directory = directory
        self.path = os.path.join(directory, LOCK)
        self.fd: int | None = None
        self.note: str | None = None
        self._finalizer = None

    @property
    def held(self) -> bool:
        return self.fd is not None

    def acquire(self) -> None:
        """Take the lock now or raise ``MpidmlError`` naming the directory and the holder."""
        import fcntl

        os.makedirs(self.directory, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 512, 0).decode(errors="replace").strip() or "unknown (no holder recorded)"
            os.close(fd)
            raise MpidmlError(f"checkpoint directory {self.directory} is in use by another job: {holder} "
                              f"(lock {self.path}); wait for it to end, or use another --checkpoint-dir") from None
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                raise
            self.note = (f"warning: cannot lock {self.path} ({exc.strerror}): a second job on "
                         f"{self.directory} would not be detected")
            return
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"host {socket.gethostname()}, pid {os.getpid()}, since {_now()}\n".encode(), 0)
        self.fd = fd
        self._finalizer = weakref.finalize(self, os.close, fd)

    def release(self) -> None:
        if self._finalizer is not None:
            self._finalizer()     # closing the descriptor drops the flock
            self._finalizer = None
        self.fd = None


def lock_directory(comm, directory: str) -> DirectoryLock:
    """Collective: rank 0 takes ``directory``'s lock; every rank raises the same error
    (exit 2) if another job holds it. Returns the lock (held on rank 0 only)."""
    lock = DirectoryLock(directory)
    fail_together(comm, f"checking the checkpoint directory {directory}",
                  lambda: lock.acquire() if comm.Get_rank() == 0 else None)
    return lock


# ---------------------------------------------------------------------------------------

class Checkpointer:
    """Collective checkpointing for a training run on ``comm``, owning its directory.

    Rank 0 writes (shared state is identical on every rank in synchronous training);
    every rank learns whether it worked (``fail_together``), so a full disk or an
    unwritable directory stops all ranks with one message and the previous checkpoint
    stays. Every rank reads on resume (the directory must be on a shared file system).

    Args:
        comm: the training communicator (every rank constructs and calls collectively).
        directory, keep: where, and how many of this run's checkpoints to keep.
        model: the model description (kind, d, dtype, nparams, ...); config: the training
            configuration (a dict of TrainConfig fields).
        data: the training set's spec (path, directory or glob): fingerprinted on rank 0
            (``data_identity``) and compared on resume.
        resume: continue this directory's run (else start a fresh one).
        overwrite: a fresh run may replace another run's checkpoints (moved aside, deleted
            after this run's first checkpoint).
        resume_with_changes: accept ``allowed`` changes of settings on resume.
        lock: a ``DirectoryLock`` taken earlier (``lock_directory``), else ``open`` takes it.

    Example::

        ck = Checkpointer(comm, "ckpt", 3, model_desc, asdict(cfg), data=cfg.data, resume=True)
        found = ck.open(log)            # None: nothing to resume, start at step 0
        ...
        ck.save(step, {"epoch": e}, shared_state, rank_state)
        ck.close()                      # releases the directory lock
    """

    def __init__(self, comm, directory: str, keep: int, model: dict, config: dict, fault=None, *,
                 data=None, resume: bool = False, overwrite: bool = False,
                 resume_with_changes: bool = False, lock: DirectoryLock | None = None):
        self.comm, self.directory, self.keep = comm, directory, keep
        self.model, self.config, self.fault = model, config, fault
        self.data_spec, self.resume_requested = data, resume
        self.overwrite, self.resume_with_changes = overwrite, resume_with_changes
        self.lock = lock
        self.last_path: str | None = None
        self.run_id: str | None = None
        self.data: dict | None = None
        self.resume_changes: list[str] = []
        self._aside: str | None = None     # another run's files, moved aside by overwrite
        self._log = None

    # -- the settings this run compares and hashes ---------------------------------------
    def settings(self) -> dict:
        return {**self.config, "data": self.data, "model": self.model}

    @staticmethod
    def settings_of(meta: dict) -> dict:
        """The settings a checkpoint was written with (older checkpoints: what they have)."""
        out = dict(meta.get("config") or {})
        for key in ("data", "model"):
            if isinstance(meta.get(key), dict):
                out[key] = meta[key]
            else:
                out.pop(key, None)
        return out

    # -- start-up ------------------------------------------------------------------------
    def open(self, log) -> Checkpoint | None:
        """Collective: lock and check the directory, then either claim it for a fresh run
        or find the checkpoint to resume from (None: the directory has none; start at 0).
        ``log`` prints on rank 0. Raises the same ``CollectiveError`` (exit 2) on every
        rank if the directory is another job's, holds another run, or cannot be resumed."""
        self._log = log
        try:
            return self._open()
        except BaseException:
            self.close()      # an in-process caller may try again; a job ends anyway
            raise

    def _open(self) -> Checkpoint | None:
        rank0 = self.comm.Get_rank() == 0
        what = f"checking the checkpoint directory {self.directory}"
        if self.lock is None:
            self.lock = lock_directory(self.comm, self.directory)
        if self.data_spec is not None:
            self.data = fail_together(self.comm, f"fingerprinting the training data {self.data_spec}",
                                      lambda: data_identity(self.data_spec) if rank0 else None)
            self.data = self.comm.bcast(self.data, root=0)
        fail_together(self.comm, what, lambda: self._check_directory() if rank0 else None)
        if not self.resume_requested:
            self.run_id = fail_together(self.comm, what, lambda: self._claim_fresh() if rank0 else None)
            self.run_id = self.comm.bcast(self.run_id, root=0)
            return None
        chosen = fail_together(self.comm, f"resuming from {self.directory}",
                               lambda: self._choose() if rank0 else None)
        path, self.run_id, self.resume_changes = self.comm.bcast(
            (chosen.path if chosen else None, self.run_id, self.resume_changes) if rank0 else None, root=0)
        if path is None:
            return None
        ck = fail_together(self.comm, f"resuming from {path}",
                           lambda: chosen if rank0 else read_checkpoint(path))
        steps = self.comm.allgather(ck.meta["step"])
        if len(set(steps)) != 1:
            raise MpidmlError(f"ranks found different checkpoints in {self.directory} ({steps}): "
                              "is it on a shared file system?")
        self.last_path = ck.path
        return ck

    def _check_directory(self) -> None:
        """Rank 0: the lock's note, the temp-file sweep, a write probe."""
        if self.lock.note:
            self._log(self.lock.note)
        for pattern in _TEMPS:
            _, kept = sweep_temp_files(self.directory, pattern, exclusive=self.lock.held)
            for tmp in kept:
                self._log(f"note: keeping {tmp}: its writer may still be running "
                          "(another job writing into this directory?)")
        probe = os.path.join(self.directory, ".write-test")
        with atomic_path(probe) as tmp, open(tmp, "w") as fh:
            fh.write("ok")
        os.unlink(probe)

    def _manifest(self, created: str | None = None) -> None:
        _write_manifest(self.directory, {
            "run_id": self.run_id, "config_sha256": config_digest(self.settings()),
            "host": socket.gethostname(), "pid": os.getpid(), "created": created or _now(),
            "started": _now(), "mpidml_version": __version__})

    def _claim_fresh(self) -> str:
        """Rank 0: a fresh run takes the directory (refusing another run's checkpoints
        unless overwrite); returns the new run id."""
        files = list_checkpoints(self.directory)
        if files:
            try:
                owner = (read_manifest(self.directory) or {}).get("run_id")
            except MpidmlError:
                owner = None
            names = ", ".join(os.path.basename(p) for _, p in files)
            whose = f"run {owner}" if owner else "an earlier run"
            if not self.overwrite:
                raise MpidmlError(
                    f"{self.directory} holds {len(files)} checkpoint(s) of {whose} ({names}); a fresh run "
                    "would mix with them. Continue that run with --resume, use another --checkpoint-dir, "
                    "or pass --overwrite-checkpoints to replace them")
            self._aside = os.path.join(self.directory, f"replaced-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
            os.makedirs(self._aside)
            for _, path in files:
                os.replace(path, os.path.join(self._aside, os.path.basename(path)))
            if os.path.exists(os.path.join(self.directory, MANIFEST)):
                os.replace(os.path.join(self.directory, MANIFEST), os.path.join(self._aside, MANIFEST))
            self._log(f"--overwrite-checkpoints: moved {len(files)} checkpoint(s) of {whose} to {self._aside}; "
                      "they are deleted once this run's first checkpoint is written")
        self.run_id = secrets.token_hex(8)
        self._manifest()
        return self.run_id

    def _choose(self) -> Checkpoint | None:
        """Rank 0: the checkpoint to resume from, the run id, the accepted changes."""
        try:
            manifest = read_manifest(self.directory)
        except MpidmlError as exc:
            self._log(f"warning: {exc}; taking the run of the newest readable checkpoint")
            manifest = None
        owner = manifest["run_id"] if manifest else None
        ck, skipped = select_checkpoint(self.directory, owner)   # no manifest: any run's newest
        for path, why in skipped:
            self._log(f"resume: skipping {path}: {why}")
        if ck is None:
            if skipped:
                raise MpidmlError(
                    f"{self.directory}: {len(skipped)} checkpoint file(s) but none is usable; refusing to "
                    "start over (move them away, or start fresh with --overwrite-checkpoints):\n    "
                    + "\n    ".join(f"{os.path.basename(p)}: {why}" for p, why in skipped))
            aside = sorted(glob.glob(os.path.join(self.directory, "replaced-*")))
            if aside:
                self._log(f"resume: earlier checkpoints moved aside by --overwrite-checkpoints remain in "
                          f"{', '.join(aside)}")
            self.run_id = secrets.token_hex(8)
            self._manifest()
            return None
        breaking, allowed = compare_configs(self.settings_of(ck.meta), self.settings())
        if breaking:
            raise MpidmlError(
                f"{ck.path}: --resume under settings that break this run:\n    " + "\n    ".join(breaking)
                + ("\n  (and, allowed with --resume-with-changes: " + "; ".join(allowed) + ")" if allowed else "")
                + "\n  these cannot change within a run; start a fresh run instead (another --checkpoint-dir, "
                  "or --overwrite-checkpoints)")
        if allowed and not self.resume_with_changes:
            raise MpidmlError(
                f"{ck.path}: --resume with changed settings:\n    " + "\n    ".join(allowed)
                + "\n  pass --resume-with-changes to continue under them (recorded in the metrics header), "
                  "or resume with the checkpoint's values")
        if allowed:
            self._log("resume: continuing with changed settings: " + "; ".join(allowed))
        self.resume_changes = allowed
        self.run_id = ck.meta.get("run_id") or owner or secrets.token_hex(8)
        created = manifest.get("created") if manifest and manifest["run_id"] == self.run_id else None
        self._manifest(created)
        return ck

    # -- during the run ------------------------------------------------------------------
    def save(self, step: int, meta: dict, state: dict[str, np.ndarray],
             rank_state: dict[str, np.ndarray] | None = None) -> str:
        """Collective: write checkpoint ``step`` from rank 0 (``state`` as rank 0 has
        it; ``rank_state``, if any rank has one, gathered from every rank); returns its path."""
        hook = self.fault.checkpoint_hook() if (self.fault and self.comm.Get_rank() == 0) else None
        gathered = self.comm.gather(rank_state or {}, root=0)

        def write():
            if self.comm.Get_rank() != 0:
                return None
            per_rank = gathered if any(gathered) else None
            path = write_checkpoint(self.directory, step,
                                    {"model": self.model, "config": self.config, "data": self.data,
                                     "run_id": self.run_id, "config_sha256": config_digest(self.settings()),
                                     "world_size": self.comm.Get_size(), **meta},
                                    state, per_rank=per_rank, keep=self.keep, crash_hook=hook)
            if self._aside is not None:    # this run has a checkpoint: the replaced run's files go
                shutil.rmtree(self._aside, ignore_errors=True)
                self._aside = None
            return path

        path = fail_together(self.comm, f"writing checkpoint {step} to {self.directory}", write)
        self.last_path = self.comm.bcast(path, root=0)
        return self.last_path

    def close(self) -> None:
        """Release the directory lock (also released when the process ends)."""
        if self.lock is not None:
            self.lock.release()
