"""Wall time of the CLI's cheap paths (``--help``, ``--version``, an argument error),
which must not import the numeric stack (issue 23 target: under 1 s).

    flock -x /tmp/cpu.lock python bench/cli_startup.py [--before TREE] [--reps 7]

``--before TREE``: another checkout (e.g. ``git worktree add /tmp/before <commit>``) timed
interleaved with this one. Warm caches (the first call of each is discarded). Writes
bench/results/cli_startup.md.
"""

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CASES = (["--help"], ["--version"], ["--epochs", "x"])


def wall(tree: str, args: list[str]) -> float:
    env = dict(os.environ, PYTHONPATH=tree)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "mpidml.train", *args], capture_output=True, env=env, cwd="/")
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", metavar="TREE", help="a checkout to compare with (timed interleaved)")
    ap.add_argument("--reps", type=int, default=7)
    args = ap.parse_args()
    trees = [("before", args.before)] if args.before else []
    trees.append(("now", ROOT))
    times: dict = {}
    for _name, tree in trees:
        for case in CASES:
            wall(tree, case)                                   # warm the caches
    for _ in range(args.reps):
        for tree_name, tree in trees:
            for case in CASES:
                times.setdefault((tree_name, " ".join(case)), []).append(wall(tree, case))
    lines = ["# CLI start-up: `python -m mpidml.train` cheap paths", "",
             f"`flock -x /tmp/cpu.lock python bench/cli_startup.py{' --before ' + args.before if args.before else ''}"
             f" --reps {args.reps}`; {platform.processor() or platform.machine()}, Python "
             f"{platform.python_version()}, load average {os.getloadavg()[0]:.2f}; medians of {args.reps} "
             "interleaved runs, warm caches.", "",
             "| tree | arguments | median s | min – max s |", "| --- | --- | ---: | ---: |"]
    for (tree_name, case), xs in times.items():
        lines.append(f"| {tree_name} | `{case}` | {statistics.median(xs):.3f} | {min(xs):.3f} – {max(xs):.3f} |")
    text = "\n".join(lines) + "\n"
    with open(os.path.join(ROOT, "bench", "results", "cli_startup.md"), "w") as fh:
        fh.write(text)
    print(text)


if __name__ == "__main__":
    main()
