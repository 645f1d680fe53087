"""The embedded default data set: generated once into a cache directory, then reused.

Cache directory: ``--cache-dir``, else ``$MPIDML_CACHE_DIR``, else
``$XDG_CACHE_HOME/mpidml`` (``~/.cache/mpidml``). Rank 0 creates missing files
atomically; the other ranks wait (sleeping, not spinning) and all ranks learn
together whether it worked.
"""

from __future__ import annotations

import os
import time

from ..runtime.errors import fail_together
from ..runtime.poll import Backoff, poll_until
from .synth import make_binary_dense

__all__ = ["default_cache_dir", "ensure_default_dataset", "polite_barrier", "DEFAULT_SET"]

# n_train, n_test, d, seed of the default binary classification set.
DEFAULT_SET = {"n_train": 200_000, "n_test": 20_000, "d": 100, "seed": 2024}


def default_cache_dir() -> str:
    env = os.environ.get("MPIDML_CACHE_DIR")
    if env:
        return env
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "mpidml")


def default_paths(cache_dir: str) -> tuple[str, str]:
    s = DEFAULT_SET
    stem = f"binary-n{s['n_train']}-d{s['d']}-seed{s['seed']}"
    return (os.path.join(cache_dir, f"{stem}-train.h5"),
            os.path.join(cache_dir, f"{stem}-test.h5"))


def polite_barrier(comm, poll: float = 0.005) -> None:
    """Barrier that sleeps while waiting, so ranks oversubscribing cores do not
    steal CPU from the rank doing the work (MPICH busy-polls in a plain Barrier)."""
    req = comm.Ibarrier()
    poll_until(req.Test, Backoff(nap=poll))


def _generate_missing(train: str, test: str, log) -> None:
    s = DEFAULT_SET
    for path, n, stream in ((train, s["n_train"], 0), (test, s["n_test"], 1)):
        if not os.path.exists(path):
            t0 = time.perf_counter()
            make_binary_dense(path, n, s["d"], seed=s["seed"], stream=stream)
            log(f"generated {path} ({n} x {s['d']} float32) in {time.perf_counter() - t0:.1f} s")


def ensure_default_dataset(comm, cache_dir: str | None = None, log=print) -> tuple[str, str]:
    """Collective: make sure the default train/test files exist; return their paths."""
    cache_dir = cache_dir or default_cache_dir()
    train, test = default_paths(cache_dir)

    def make():
        try:
            if comm.Get_rank() == 0:
                _generate_missing(train, test, log)
        finally:
            polite_barrier(comm)

    fail_together(comm, f"creating the default data set in {cache_dir}", make)
    return train, test
