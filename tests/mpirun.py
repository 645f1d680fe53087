"""Launch ``mpiexec -n K`` (or any command) as a subprocess with a hard timeout.

A hang fails one test: on timeout the whole process group (mpiexec, hydra proxies,
ranks) is killed and the test fails with whatever was printed so far.

Every subprocess timeout and polling deadline in tests/ goes through :func:`scaled`, which
multiplies it by ``MPIDML_TEST_TIMEOUT_SCALE`` (a float, default 1): on a loaded machine run
``MPIDML_TEST_TIMEOUT_SCALE=3 python -m pytest ...``. conftest.py scales pytest-timeout's
per-test limit by the same factor. Bounds that are the property under test (e.g. "kill -9
ends the job in < 30 s") are not scaled.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SCALE_VAR = "MPIDML_TEST_TIMEOUT_SCALE"


def timeout_scale() -> float:
    """``MPIDML_TEST_TIMEOUT_SCALE`` as a positive float (1 when unset)."""
    raw = os.environ.get(SCALE_VAR, "").strip()
    if not raw:
        return 1.0
    try:
        scale = float(raw)
    except ValueError:
        raise ValueError(f"{SCALE_VAR}={raw!r} is not a number (e.g. {SCALE_VAR}=2.5)") from None
    if not scale > 0:
        raise ValueError(f"{SCALE_VAR}={raw!r} must be > 0")
    return scale


def scaled(seconds: float) -> float:
    """A test's timeout or polling deadline in seconds, times the timeout scale factor."""
    return seconds * timeout_scale()


def mpiexec_path() -> str:
    # Prefer the launcher installed beside this interpreter (the mpich wheel's hydra).
    local = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    found = local if os.path.exists(local) else shutil.which("mpiexec")
    if not found:
        pytest.fail("mpiexec not found: install the test extra (pip install -e '.[test]')")
    return found


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def test_env(extra: dict | None = None) -> dict:
    env = dict(os.environ)
    env.update({"NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"})
    env.update(extra or {})
    return env


test_env.__test__ = False  # not a test function


def spawn(cmd: list[str], env: dict | None = None, cwd: str | None = None) -> subprocess.Popen:
    """Start ``cmd`` in its own session (process group) with the test environment and piped
    text output. Pair it with :func:`finish` or :func:`kill_group` in a ``finally``."""
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=test_env(env), cwd=cwd, start_new_session=True)


def kill_group(proc: subprocess.Popen) -> tuple[str, str]:
    """SIGKILL ``proc``'s whole process group if it still runs; return what it printed."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    out, err = proc.communicate()
    return out or "", err or ""


def finish(proc: subprocess.Popen, timeout: float, what: str = "") -> tuple[str, str]:
    """Wait ``scaled(timeout)`` s for ``proc`` (from :func:`spawn`); on timeout kill its group and
    fail the test with its output. Returns (stdout, stderr)."""
    limit = scaled(timeout)
    try:
        return proc.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        out, err = kill_group(proc)
        args = proc.args if isinstance(proc.args, str) else " ".join(map(str, proc.args))
        pytest.fail(f"timed out after {limit:g} s (hang?): {what or args}\n"
                    f"--- stdout\n{out[-3000:]}\n--- stderr\n{err[-3000:]}")


def run(cmd: list[str], timeout: float, env: dict | None = None, cwd: str | None = None) -> Result:
    """Run ``cmd`` in its own session; kill the whole group and fail the test after
    ``scaled(timeout)`` seconds."""
    t0 = time.monotonic()
    proc = spawn(cmd, env, cwd)
    try:
        out, err = finish(proc, timeout)
    finally:
        if proc.poll() is None:   # finish() was interrupted (e.g. KeyboardInterrupt)
            kill_group(proc)
    return Result(proc.returncode, out, err, time.monotonic() - t0)


def run_mpi(n: int, args: list[str], timeout: float = 120, env: dict | None = None,
            cwd: str | None = None) -> Result:
    """``mpiexec -n n python ARGS...`` with a (scaled) timeout."""
    return run([mpiexec_path(), "-n", str(n), sys.executable, *args], timeout, env, cwd)


def run_case_report(prog: str, p: int, timeout: float = 300) -> list[str]:
    """Run an MPI case program that prints ``{"p": P, "results": [{"case", "ok", ...}]}`` as
    its last line (rank 0); fail on a non-zero exit, a wrong size or any case not ok, and
    return the names of the cases that ran (in order)."""
    import json

    res = run_mpi(p, [prog], timeout=timeout)
    assert res.returncode == 0, res.output
    report = json.loads(res.stdout.strip().splitlines()[-1])
    assert report["p"] == p
    bad = [c for c in report["results"] if not c["ok"]]
    assert not bad, bad
    return [c["case"] for c in report["results"]]


def rank_pids(proc: subprocess.Popen, marker: str) -> list[int]:
    """The pids of the ranks of the job ``proc`` launched: the ``mpidml.train`` processes whose
    command line contains ``marker`` (a path unique to the test), mpiexec itself left out."""
    out = subprocess.run(["pgrep", "-f", f"mpidml.train .*{marker}"], capture_output=True, text=True,
                         timeout=scaled(30))
    return [int(x) for x in out.stdout.split() if int(x) != proc.pid]
