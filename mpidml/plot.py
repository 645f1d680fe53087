"""``python -m mpidml.plot run1.jsonl run2.jsonl ... -o curves.png``: training curves.

Four panels from the ``--metrics`` logs, one line per run: training objective per
epoch, objective against training wall time, test accuracy per epoch (when the run
had a test set), and objective against bytes communicated per rank. Headless
(matplotlib's Agg backend).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from . import __version__

__all__ = ["read_run", "plot_runs", "main"]


def read_run(path: str) -> dict:
    """{"header", "epochs", "summary", "label"} of one metrics file."""
    header, epochs, summary = {}, [], {}
    with open(path) as fh:
        for n, line in enumerate(fh, 1):
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise SystemExit(f"mpidml.plot: {path}:{n}: not JSON ({exc})") from None
            kind = rec.get("type")
            if kind == "header":
                header = rec
            elif kind == "epoch":
                epochs.append(rec)
            elif kind == "summary":
                summary = rec
    if not epochs:
        raise SystemExit(f"mpidml.plot: {path}: no epoch records (is it a --metrics file?)")
    cfg = header.get("config", {})
    label = f"{os.path.basename(path)} (p={header.get('world_size', '?')}"
    label += f", {cfg['model']}" if cfg.get("model") else ""
    label += ")"
    return {"header": header, "epochs": epochs, "summary": summary, "label": label}


def plot_runs(runs: list[dict], out: str, title: str | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
    (a_ep, a_time), (a_acc, a_bytes) = axes
    for run in runs:
        ep = [e for e in run["epochs"] if e.get("objective") is not None]   # evaluated epochs (--eval-every)
        x = [e["epoch"] for e in ep]
        obj = [e["objective"] for e in ep]
        a_ep.plot(x, obj, marker="o", label=run["label"])
        a_time.plot([e["train_seconds"] for e in ep], obj, marker="o", label=run["label"])
        accs = [e.get("test_accuracy") for e in ep]
        if any(a is not None for a in accs):
            a_acc.plot(x, accs, marker="o", label=run["label"])
        a_bytes.plot([e.get("bytes_communicated", 0) / 1e6 for e in ep], obj, marker="o", label=run["label"])
    a_ep.set(xlabel="epoch", ylabel="training objective", title="objective per epoch")
    a_time.set(xlabel="training wall time (s)", ylabel="training objective", title="objective vs time")
    a_acc.set(xlabel="epoch", ylabel="test accuracy", title="test accuracy")
    a_bytes.set(xlabel="MB sent + received per rank", ylabel="training objective",
                title="objective vs communication")
    for ax in axes.flat:
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mpidml.plot",
                                 description="Plot training curves from --metrics JSON-lines logs.")
    ap.add_argument("--version", action="version", version=f"mpidml {__version__}")
    ap.add_argument("runs", nargs="+", metavar="RUN.jsonl")
    ap.add_argument("-o", "--output", default="curves.png", help="PNG to write")
    ap.add_argument("--title", help="figure title")
    args = ap.parse_args(argv)
    missing = [p for p in args.runs if not os.path.exists(p)]
    if missing:
        ap.error(f"no such file: {', '.join(missing)}")
    plot_runs([read_run(p) for p in args.runs], args.output, args.title)
    print(f"wrote {args.output} ({len(args.runs)} run(s))")
    return 0


if __name__ == "__main__":
    sys.exit(main())
