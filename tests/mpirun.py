"""Launch ``mpiexec -n K`` as a subprocess with a hard timeout.

A hang fails one test: on timeout the whole process group (mpiexec, hydra proxies,
ranks) is killed and the test fails with whatever was printed so far.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


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


def run(cmd: list[str], timeout: float, env: dict | None = None, cwd: str | None = None) -> Result:
    """Run ``cmd`` in its own session; kill the whole group and fail the test on timeout."""
    import time

    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=test_env(env), cwd=cwd, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"timed out after {timeout} s (hang?): {' '.join(cmd)}\n"
                    f"--- stdout\n{out[-3000:]}\n--- stderr\n{err[-3000:]}")
    return Result(proc.returncode, out, err, time.monotonic() - t0)


def run_mpi(n: int, args: list[str], timeout: float = 120, env: dict | None = None,
            cwd: str | None = None) -> Result:
    """``mpiexec -n n python ARGS...`` with a timeout."""
    return run([mpiexec_path(), "-n", str(n), sys.executable, *args], timeout, env, cwd)
