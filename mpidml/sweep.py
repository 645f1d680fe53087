"""``python -m mpidml.sweep DIR``: gather a job array's metrics logs into one table.

Reads every ``task-<i>.jsonl`` in DIR (written by ``slurm/sweep.sbatch`` through
``--metrics``), finds the settings that differ between tasks, and prints one row per
task: those settings, final objective, test accuracy, training seconds. Writes
``summary.json`` and ``summary.md`` into DIR, and ``curves.png`` (objective per epoch,
one line per task) when matplotlib is installed.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import sys

from . import __version__

__all__ = ["gather", "main"]


def _load(path: str) -> dict:
    header, epochs, summary = None, [], None
    with open(path) as fh:
        for line in fh:
            rec = json.loads(line)
            if rec.get("type") == "header":
                header = rec
            elif rec.get("type") == "epoch":
                epochs.append(rec)
            elif rec.get("type") == "summary":
                summary = rec
    return {"path": path, "header": header, "epochs": epochs, "summary": summary}


def gather(directory: str) -> tuple[list[str], list[dict]]:
    """(swept setting names, one row per task sorted by task id)."""
    paths = sorted(glob.glob(os.path.join(directory, "task-*.jsonl")),
                   key=lambda p: int(re.search(r"task-(\d+)", p).group(1)))
    if not paths:
        raise SystemExit(f"mpidml.sweep: no task-*.jsonl files in {directory}")
    runs = [_load(p) for p in paths]
    configs = [r["header"]["config"] if r["header"] else {} for r in runs]
    keys = sorted({k for c in configs for k in c if k != "metrics"})
    swept = [k for k in keys if len({json.dumps(c.get(k)) for c in configs}) > 1]
    rows = []
    for path, run, cfg in zip(paths, runs, configs):
        s = run["summary"] or {}
        rows.append({"task": int(re.search(r"task-(\d+)", path).group(1)),
                     **{k: cfg.get(k) for k in swept},
                     "status": "done" if run["summary"] else "incomplete",
                     "world_size": s.get("world_size"), "epochs": len(run["epochs"]),
                     "objective": s.get("objective"), "test_accuracy": s.get("test_accuracy"),
                     "train_seconds": s.get("train_seconds"),
                     "curve": [(e["epoch"], e["objective"]) for e in run["epochs"]
                               if e.get("objective") is not None]})   # evaluated epochs only
    return swept, rows


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return "-" if v is None else str(v)


def table(swept: list[str], rows: list[dict]) -> str:
    cols = ["task", *swept, "status", "world_size", "epochs", "objective", "test_accuracy", "train_seconds"]
    cells = [[_fmt(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(c), *(len(x[i]) for x in cells)) for i, c in enumerate(cols)]
    line = lambda xs: "| " + " | ".join(x.ljust(w) for x, w in zip(xs, widths)) + " |"  # noqa: E731
    return "\n".join([line(cols), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
                     + [line(x) for x in cells])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mpidml.sweep",
                                 description="Gather a Slurm array sweep's metrics into one table.")
    ap.add_argument("--version", action="version", version=f"mpidml {__version__}")
    ap.add_argument("directory", help="the sweep directory (sweep-<array job id>)")
    args = ap.parse_args(argv)
    swept, rows = gather(args.directory)
    text = table(swept, rows)
    print(text)
    with open(os.path.join(args.directory, "summary.md"), "w") as fh:
        fh.write(text + "\n")
    with open(os.path.join(args.directory, "summary.json"), "w") as fh:
        json.dump({"swept": swept, "rows": rows}, fh, indent=1)
    try:
        import matplotlib
    except ImportError:
        return 0
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in rows:
        label = ", ".join(f"{k}={r[k]}" for k in swept) or f"task {r['task']}"
        ax.plot([e for e, _ in r["curve"]], [o for _, o in r["curve"]], marker="o", label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("training objective")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(args.directory, "curves.png"), dpi=110)
    return 0


if __name__ == "__main__":
    sys.exit(main())
