"""Output paths: one check for every file a command writes, before any work is done.

Every output (``--metrics``, ``--save-model``, ``--timeline``, ``predict -o``, ``data
convert``/``synth`` outputs, ``bench --json``) goes through ``check_output``:

* an output that is one of the run's **input files** (same inode: hard links and
  symlinks count) is refused;
* an output that **exists and holds another kind of file** is refused. The kind is told
  by content, not by extension (``file_kind``): an HDF5 file is a data set (labelled or
  not), a saved model, a checkpoint, predictions or other HDF5; predictions are also
  predict's CSV/TSV table (header ``row,prediction,...``) and its structured ``.npy``
  (fields ``row``, ``prediction``, ...); a text file is a metrics log (first
  line a JSON object with ``"type"``), a Chrome trace (``{"traceEvents"``), other JSON,
  or other text. A file of the expected kind (re-running a command) or an empty file
  may be replaced;
* two outputs of one command on the same path are refused;
* the parent directory is created if missing (the same for every output) and must be
  writable.

Errors are ``MpidmlError`` naming the flag and the path; the CLIs exit with status 2.
"""

from __future__ import annotations

import json
import os
import re

from .errors import MpidmlError

__all__ = ["OUTPUT_KINDS", "file_kind", "check_output", "check_outputs", "same_file"]

# expected kind -> (what it is, kinds of existing file that may be replaced)
OUTPUT_KINDS = {
    "metrics": ("a JSON-lines metrics log", {"metrics"}),
    "timeline": ("a Chrome-trace JSON timeline", {"trace"}),
    "json": ("a JSON file", {"json"}),
    "model": ("an mpidml saved model", {"model"}),
    "predictions": ("an mpidml predictions file", {"predictions"}),
    "data": ("an HDF5 data set", {"data"}),
}

_DESCRIBE = {
    "data": "an HDF5 data set (/X, /y)", "model": "an mpidml saved model", "checkpoint": "an mpidml checkpoint",
    "predictions": "an mpidml predictions file", "hdf5": "an HDF5 file", "metrics": "a JSON-lines metrics log",
    "trace": "a Chrome-trace JSON timeline", "json": "a JSON file", "text": "a text file",
    "binary": "a binary file", "directory": "a directory", "empty": "an empty file", "other": "not a regular file",
}

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_NPY_MAGIC = b"\x93NUMPY"
_TRACE = re.compile(rb'^\s*\{\s*"traceEvents"')


def _hdf5_kind(path: str) -> str:
    import h5py

    try:
        with h5py.File(path, "r", locking=False) as f:
            if "X" in f and "y" in f:
                return "data"
            if "step" in f.attrs and "attrs_sha256" in f.attrs:
                return "checkpoint"
            if "params" in f and "format" in f.attrs:
                return "model"
            if "prediction" in f and "score" in f:
                return "predictions"
            if "X" in f:            # an unlabelled data set (no /y)
                return "data"
    except OSError:
        pass
    return "hdf5"


def file_kind(path: str) -> str | None:
    """What the existing file at ``path`` holds, by content (``None``: nothing there).
    One of the keys of ``_DESCRIBE``: data, model, checkpoint, predictions, hdf5,
    metrics, trace, json, text, binary, directory, empty, other."""
    if not os.path.lexists(path):
        return None
    if os.path.isdir(path):
        return "directory"
    if not os.path.isfile(path):
        return "other"
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
    except OSError:
        return "other"
    if not head:
        return "empty"
    # HDF5 signature at 0 or after a user block (512, 1024, 2048, ...)
    if head.startswith(_HDF5_MAGIC) or _HDF5_MAGIC in head[512:] or _hdf5_at_userblock(path):
        return _hdf5_kind(path)
    if head.startswith(_NPY_MAGIC):
        return "predictions" if _npy_fields(path)[:2] == ("row", "prediction") else "binary"
    if b"\0" in head:
        return "binary"
    if _TRACE.match(head):
        return "trace"
    first = head.split(b"\n", 1)[0]
    if re.split(rb"[,\t]", first.strip())[:2] == [b"row", b"prediction"]:
        return "predictions"   # predict's CSV/TSV table
    try:
        obj = json.loads(first)
        if isinstance(obj, dict) and "type" in obj:
            return "metrics"
    except ValueError:
        pass
    return "json" if head.lstrip()[:1] in (b"{", b"[") else "text"


def _npy_fields(path: str) -> tuple[str, ...]:
    """The field names of the structured array in ``.npy`` file ``path`` (() if none or unreadable)."""
    import numpy as np

    try:
        dtype = np.load(path, mmap_mode="r").dtype   # reads the header only
    except (OSError, ValueError):
        return ()
    return tuple(dtype.names or ())


def _hdf5_at_userblock(path: str) -> bool:
    size = os.path.getsize(path)
    offset = 4096
    with open(path, "rb") as fh:
        while offset + 8 <= size and offset <= 1 << 24:
            fh.seek(offset)
            if fh.read(8) == _HDF5_MAGIC:
                return True
            offset *= 2
    return False


def same_file(a: str, b: str) -> bool:
    """Whether paths ``a`` and ``b`` name the same existing file (or the same path)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)


def check_output(path: str, kind: str, flag: str, inputs=()) -> str:
    """Check one output before anything is written; create its parent directory.

    ``kind``: a key of ``OUTPUT_KINDS``; ``flag``: how the user named it (``--metrics``);
    ``inputs``: ``(flag, path)`` pairs of the command's input files. Returns the path.
    Raises ``MpidmlError`` if the output is an input, exists holding another kind of
    file, or its directory cannot be created or written to."""
    path = os.fspath(path)
    what, replaceable = OUTPUT_KINDS[kind]
    for in_flag, in_path in inputs:
        if in_path is not None and os.path.exists(path) and same_file(path, in_path):
            raise MpidmlError(f"{flag} {path}: is the input file of {in_flag} ({in_path}); "
                              "refusing to overwrite an input")
    found = file_kind(path)
    if found is not None and found != "empty" and found not in replaceable:
        raise MpidmlError(f"{flag} {path}: exists and is {_DESCRIBE[found]}, not {what}; refusing to "
                          "overwrite it (remove it or choose another path)")
    parent = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(parent, exist_ok=True)
    except OSError as exc:
        raise MpidmlError(f"{flag} {path}: cannot create directory {parent} ({exc.strerror})") from None
    if not os.access(parent, os.W_OK | os.X_OK):
        raise MpidmlError(f"{flag} {path}: directory {parent} is not writable")
    return path


def check_outputs(outputs, inputs=()) -> None:
    """``check_output`` for each ``(flag, path, kind)`` of ``outputs`` (``path`` None:
    not requested), and no two outputs on one path."""
    given = [(flag, path, kind) for flag, path, kind in outputs if path]
    for i, (flag, path, _) in enumerate(given):
        for other, opath, _ in given[:i]:
            if os.path.abspath(path) == os.path.abspath(opath) or (os.path.exists(path) and same_file(path, opath)):
                raise MpidmlError(f"{flag} {path}: the same path as {other}; give each output its own file")
    for flag, path, kind in given:
        check_output(path, kind, flag, inputs)
