"""The allreduce results of ``bench/collectives.sh`` as a markdown table, with issue 22's targets.

    python bench/collectives_table.py bench/results/allreduce-p2.json [--sizes 4K,64K,...]

One row per (size, configuration): native, auto, ring and shm times (µs, medians), auto's and
ring's ratio to native in the same configuration (xnative > 1: faster than MPI), the memory
bound's time and the fraction of it auto and native reach. Then the targets, measured per
configuration: auto ≥ 2× native at 4 MiB, ≥ 2.5× at 16 MiB, ≥ 80 % of the memory bound at
16 MiB, never slower than 1/1.2 of native (xnative ≥ 0.83) at any size.
"""

from __future__ import annotations

import argparse
import json

from mpidml.bench import parse_size

CONFIGS = ("priv/in", "priv/out", "win/in", "win/out")


def _size(n: int) -> str:
    for unit, shift in (("M", 20), ("K", 10)):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift} {unit}iB"
    return f"{n} B"


def table(doc: dict, sizes: list[int] | None = None) -> str:
    by = {(r["size"], r["config"], r["impl"]): r for r in doc["records"]}
    all_sizes = sorted({r["size"] for r in doc["records"]})
    sizes = [s for s in all_sizes if sizes is None or s in sizes]

    def t(size, config, impl):
        r = by.get((size, config, impl))
        return f"{r['time_us']:.1f}" if r else "–"

    def ratio(size, config, impl):
        r = by.get((size, config, impl))
        return f"{r['vs_native']:.2f}" if r and r["vs_native"] else "–"

    def pct(size, config, impl):
        r = by.get((size, config, impl))
        return f"{r['pct_membound']:.0f} %" if r and r["pct_membound"] else "–"

    lines = ["| size | config | native µs | auto µs (algo) | ring µs | shm µs | auto ×native | ring ×native "
             "| membound µs | auto % mem | native % mem |",
             "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for s in sizes:
        for c in CONFIGS:
            if (s, c, "native") not in by:
                continue
            algo = by[(s, c, "auto")]["algo"] if (s, c, "auto") in by else ""
            lines.append(f"| {_size(s)} | {c} | {t(s, c, 'native')} | {t(s, c, 'auto')} ({algo}) | "
                         f"{t(s, c, 'ring')} | {t(s, c, 'shm')} | {ratio(s, c, 'auto')} | {ratio(s, c, 'ring')} | "
                         f"{t(s, '-', 'membound')} | {pct(s, c, 'auto')} | {pct(s, c, 'native')} |")
    return "\n".join(lines)


def targets(doc: dict) -> str:
    by = {(r["size"], r["config"], r["impl"]): r for r in doc["records"]}
    lines = ["| target | " + " | ".join(CONFIGS) + " |", "| --- |" + " --- |" * len(CONFIGS)]

    def cell(c, size, key, goal, fmt):
        r = by.get((size, c, "auto"))
        if not r or r[key] is None:
            return "–"
        v = r[key]
        return f"{fmt(v)} {'met' if v >= goal else '**not met**'}"

    x = lambda v: f"{v:.2f}×"  # noqa: E731
    lines.append("| auto ≥ 2× native at 4 MiB | " +
                 " | ".join(cell(c, 4 << 20, "vs_native", 2.0, x) for c in CONFIGS) + " |")
    lines.append("| auto ≥ 2.5× native at 16 MiB | " +
                 " | ".join(cell(c, 16 << 20, "vs_native", 2.5, x) for c in CONFIGS) + " |")
    lines.append("| auto ≥ 80 % of the memory bound at 16 MiB | " +
                 " | ".join(cell(c, 16 << 20, "pct_membound", 80.0, lambda v: f"{v:.0f} %") for c in CONFIGS) + " |")
    worst = []
    for c in CONFIGS:
        rs = [r for (s, cc, i), r in by.items() if cc == c and i == "auto" and r["vs_native"]]
        if not rs:
            worst.append("–")
            continue
        w = min(rs, key=lambda r: r["vs_native"])
        slow = [r for r in rs if r["vs_native"] < 1 / 1.2]
        worst.append(f"worst {w['vs_native']:.2f}× at {_size(w['size'])}; {len(slow)} of {len(rs)} sizes "
                     f"below 0.83× {'(met)' if not slow else '**not met**'}")
    lines.append("| auto never slower than 1.2× native (×native ≥ 0.83) | " + " | ".join(worst) + " |")
    nat = []
    for c in CONFIGS:
        r = by.get((16 << 20, c, "native"))
        nat.append(f"{r['pct_membound']:.0f} %" if r and r["pct_membound"] else "–")
    lines.append("| (native's own fraction of the memory bound at 16 MiB) | " + " | ".join(nat) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("json")
    ap.add_argument("--sizes", help="comma-separated sizes to show (default: all)")
    args = ap.parse_args(argv)
    with open(args.json) as fh:
        doc = json.load(fh)
    sizes = [parse_size(s) for s in args.sizes.split(",")] if args.sizes else None
    print(table(doc, sizes))
    print()
    print(targets(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
