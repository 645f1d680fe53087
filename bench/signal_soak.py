"""Signal soak: stop signals at uniformly random moments, from launch to exit (issue 24
item 5, issue 25 "what must be shown").

    python bench/signal_soak.py [--runs 50] [--procs 2,3] [--seed 0] [--out bench/results/signal_soak.md]

Each run: ``mpiexec -n P python -m mpidml.train`` on a small data set with a checkpoint
directory, and one of SIGTERM, SIGUSR1, SIGINT or two SIGTERMs 50 ms apart sent to one
rank (chosen at random) at a moment drawn uniformly from [0, T], T = the uninterrupted
run's wall time (measured first, per P). Every run must end with exit 0 (the signal came
after the last step, or before training and the run finished anyway) or exit 3 with a
checkpoint; an exit-3 run is then resumed (``--resume``, as often as needed) and must end
with exactly the parameters of the uninterrupted run (``params_digest``). Anything else —
another exit status, a hang (killed after a timeout), a resume that differs — is a failure
and is listed. Nothing is timed, so no CPU lock is needed; a loaded machine only changes
where the signals land.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KINDS = ("TERM", "USR1", "INT", "TERM,TERM")


def mpiexec() -> str:
    local = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    return local if os.path.exists(local) else "mpiexec"


def train_cmd(p: int, data: str, ck: str, metrics: str, *extra: str) -> list[str]:
    return [mpiexec(), "-n", str(p), sys.executable, "-m", "mpidml.train", "--data", data, "--epochs", "3",
            "--batch-size", "256", "--checkpoint-dir", ck, "--metrics", metrics, "-q", *extra]


def env() -> dict:
    return dict(os.environ, OMP_NUM_THREADS="1", NUMBA_NUM_THREADS="1", PYTHONUNBUFFERED="1")


def summary(metrics: str) -> dict:
    recs = [json.loads(line) for line in open(metrics)] if os.path.exists(metrics) else []
    return recs[-1] if recs and recs[-1].get("type") == "summary" else {}


def rank_pids(proc: subprocess.Popen, ck: str) -> list[int]:
    out = subprocess.run(["pgrep", "-f", f"mpidml.train .*{ck}"], capture_output=True, text=True, timeout=30)
    return [int(x) for x in out.stdout.split() if int(x) != proc.pid]


def process_age(pid: int) -> float | None:
    """Seconds since process ``pid`` started (Linux /proc), None if unknown."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            start_ticks = int(fh.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as fh:
            uptime = float(fh.read().split()[0])
        return uptime - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def one_run(p: int, data: str, work: str, delay: float, kind: str, rng: random.Random, ref: str,
            timeout: float = 180) -> dict:
    ck, metrics = os.path.join(work, "ck"), os.path.join(work, "m.jsonl")
    shutil.rmtree(ck, ignore_errors=True)
    proc = subprocess.Popen(train_cmd(p, data, ck, metrics), env=env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    t0 = time.monotonic()
    pids: list[int] = []
    # until the moment has come and the ranks exist (a moment before the ranks start is
    # taken as the first moment they can be signalled)
    while (time.monotonic() - t0 < delay or not pids) and proc.poll() is None:
        pids = pids or rank_pids(proc, ck)
        time.sleep(0.02)
    sent = []
    age = None
    if proc.poll() is None and pids:
        target = rng.choice(pids)
        age = process_age(target)
        for i, name in enumerate(kind.split(",")):
            if i:
                time.sleep(0.05)
            try:
                os.kill(target, getattr(signal, "SIG" + name))
                sent.append(name)
            except ProcessLookupError:
                pass
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        return {"ok": False, "why": "hang", "rc": None, "sent": sent, "stderr": err[-500:]}
    rc = proc.returncode
    result = {"rc": rc, "sent": sent, "delay": round(delay, 3), "kind": kind, "resumes": 0,
              "rank_age": None if age is None else round(age, 3)}
    if rc not in (0, 3):
        return {**result, "ok": False, "why": f"exit {rc}", "stderr": err[-800:]}
    while rc == 3:
        if not os.listdir(ck):
            return {**result, "ok": False, "why": "exit 3 without a checkpoint"}
        res = subprocess.run(train_cmd(p, data, ck, metrics, "--resume"), env=env(), capture_output=True,
                             text=True, timeout=timeout)
        rc = res.returncode
        result["resumes"] += 1
        if rc not in (0, 3) or result["resumes"] > 3:
            return {**result, "ok": False, "why": f"resume exit {rc}", "stderr": res.stderr[-800:]}
    digest = summary(metrics).get("params_digest")
    if digest != ref:
        return {**result, "ok": False, "why": f"final parameters {digest} != uninterrupted {ref}"}
    return {**result, "ok": True}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=50, help="runs per rank count")
    ap.add_argument("--procs", default="2,3")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "signal_soak.md"))
    args = ap.parse_args(argv)
    sys.path.insert(0, ROOT)
    from mpidml.data.synth import make_binary_dense

    rng = random.Random(args.seed)
    work = tempfile.mkdtemp(prefix="mpidml-soak-")
    data = os.path.join(work, "train.h5")
    make_binary_dense(data, 20000, 12, seed=3)
    rows, failures = [], []
    try:
        for p in [int(x) for x in args.procs.split(",")]:
            ck, metrics = os.path.join(work, f"ref-p{p}"), os.path.join(work, f"ref-p{p}.jsonl")
            t0 = time.monotonic()
            subprocess.run(train_cmd(p, data, ck, metrics), env=env(), check=True, capture_output=True, timeout=300)
            wall = time.monotonic() - t0
            ref = summary(metrics)["params_digest"]
            counts: dict = {}
            for i in range(args.runs):
                kind = rng.choice(KINDS)
                r = one_run(p, data, work, rng.uniform(0, wall), kind, rng, ref)
                outcome = r["rc"] if r.get("resumes", 0) == 0 else f"3 -> {r['resumes']} resume(s)"
                key = (kind if r.get("sent") else f"{kind} (not sent: run over)", outcome)
                counts[key] = counts.get(key, 0) + 1
                print(f"p={p} run {i + 1}/{args.runs}: {kind} at {r.get('delay', '?')} s "
                      f"(rank age {r.get('rank_age')} s) -> "
                      f"{'ok' if r['ok'] else 'FAIL ' + r['why']}", flush=True)
                if not r["ok"]:
                    failures.append({"p": p, **r})
            rows.append((p, wall, counts))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    lines = ["# Signal soak", "", f"`python bench/signal_soak.py --runs {args.runs} --procs {args.procs} "
             f"--seed {args.seed}`: one signal (kind below) to one random rank at a uniform moment in "
             "[0, uninterrupted wall time]; exit 3 runs resumed until done; final parameters compared with "
             "the uninterrupted run's bit for bit.", ""]
    for p, wall, counts in rows:
        lines += [f"## p = {p} (uninterrupted run {wall:.1f} s wall, launch included)", "",
                  "| signal | outcome | runs |", "| --- | --- | ---: |"]
        lines += [f"| {k} | exit {o} | {n} |" for (k, o), n in sorted(counts.items(), key=str)]
        lines.append("")
    lines.append(f"Failures: {len(failures)}" + ("" if not failures else ":"))
    lines += [f"- p={f['p']} {f.get('kind')} at {f.get('delay')} s (the signalled rank was "
              f"{f.get('rank_age')} s old): {f['why']}" for f in failures]
    text = "\n".join(lines) + "\n"
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text)
    print(text)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
