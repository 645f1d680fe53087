"""Atomic file creation: write to a temporary file beside the target, fsync, rename.

A reader (another rank, a concurrent job, a later run after a crash) sees either
no file or the complete file, never half of one.

Temporary files are named ``.<target>.@<host>@<pid>@<random>.tmp``: a later sweep
(``sweep_temp_files``) can tell a file whose writer is still running from one left
by a writer that died mid-write.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import socket
import tempfile

__all__ = ["atomic_path", "sweep_temp_files", "temp_writer", "writer_alive"]

# hostnames hold no '@' and mkstemp's random part neither: the fields parse back unambiguously
_TEMP_NAME = re.compile(r"\.@(?P<host>[^@/]+)@(?P<pid>\d+)@[^@/]*\.tmp$")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path in the target's directory; on normal exit fsync it and
    atomically rename it to ``path``; on an exception remove it and keep ``path``."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    prefix = f".{os.path.basename(path)}.@{socket.gethostname()}@{os.getpid()}@"
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=directory)
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def temp_writer(path: str) -> tuple[str, int] | None:
    """(host, pid) of the process that created temporary file ``path`` (None: a name
    without them, e.g. written by an older mpidml)."""
    m = _TEMP_NAME.search(os.path.basename(path))
    return (m.group("host"), int(m.group("pid"))) if m else None


def writer_alive(host: str, pid: int) -> bool | None:
    """Whether process ``pid`` on ``host`` still runs (None: another host, cannot tell).
    A reused pid reads as alive: the file is then kept, never wrongly deleted."""
    if host != socket.gethostname():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:   # exists, owned by someone else
        return True
    return True


def sweep_temp_files(directory: str, pattern: str, exclusive: bool) -> tuple[list[str], list[str]]:
    """Remove the temporary files matching ``pattern`` in ``directory`` whose writer is
    dead; returns (removed, kept).

    The rule: a file of a live process on this host is always kept. A file of a dead
    process on this host is removed. A file of another host, or one whose name carries
    no writer, is removed only when ``exclusive`` (the caller holds the directory's
    lock, so no other job that could have written it is running) and kept otherwise.
    """
    removed, kept = [], []
    for tmp in sorted(glob.glob(os.path.join(directory, pattern))):
        writer = temp_writer(tmp)
        alive = writer_alive(*writer) if writer else None
        if alive is False or (alive is None and exclusive):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            removed.append(tmp)
        else:
            kept.append(tmp)
    return removed, kept
