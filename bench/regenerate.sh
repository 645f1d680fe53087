#!/usr/bin/env bash
# Re-run the benchmarks whose raw per-run JSONL files are not kept in git, writing the raw
# files, tables and plots to the same paths under bench/results/ (bench/results/MANIFEST.md
# lists what each command produced, at which commit, on which machine).
#
# Usage: bench/regenerate.sh [--dry-run] [BENCH ...]
#   BENCH: threads straggler feature_parallel async_ps convergence (default: all, in this order)
#   --dry-run: print the commands, run nothing
#
# Each benchmark runs under `flock -x /tmp/cpu.lock` (nothing else timed on the machine
# meanwhile). The bench scripts also take /work/cpu.lock around every training run when that
# file exists; it is a different lock, so the two never wait for each other.
# Training data is generated into .cache-bench/ when missing (deterministic).
# Rough cost on the 2-core VM, estimated from the recorded runs' wall_seconds plus start-ups
# (not timed as a whole): threads ~5 min, straggler ~2 min, feature_parallel ~1 min,
# async_ps ~15 min, convergence ~1 h.
set -euo pipefail
cd "$(dirname "$0")/.."

lock=/tmp/cpu.lock
py=${PYTHON:-python}
all=(threads straggler feature_parallel async_ps convergence)

command_for() {   # the exact command of bench/results/MANIFEST.md for one benchmark
  case $1 in
    threads)          echo "$py bench/threads.py --p 2,4 --reps 3 --epochs 2" ;;
    straggler)        echo "$py bench/straggler.py --p 4 --slow 0.02 --epochs 4" ;;
    feature_parallel) echo "$py bench/feature_parallel.py --procs 2,4 --epochs 12" ;;
    async_ps)         echo "$py bench/async_ps.py --p 4 --slow 0.02 --epochs 12 --lrs 4,2,1 --reps 1" ;;
    convergence)      echo "$py bench/convergence.py --tasks convex,mlp --procs 4,8" ;;
    *) return 1 ;;
  esac
}

dry=0
benches=()
for arg in "$@"; do
  case $arg in
    --dry-run|-n) dry=1 ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    -*) echo "bench/regenerate.sh: unknown option $arg (see --help)" >&2; exit 2 ;;
    *) command_for "$arg" >/dev/null || {
         echo "bench/regenerate.sh: unknown benchmark '$arg'; choose from: ${all[*]}" >&2; exit 2; }
       benches+=("$arg") ;;
  esac
done
(( ${#benches[@]} )) || benches=("${all[@]}")

if (( ! dry )); then
  command -v flock >/dev/null || { echo "bench/regenerate.sh: flock(1) not found" >&2; exit 2; }
  "$py" -c 'import mpidml' 2>/dev/null || {
    echo "bench/regenerate.sh: '$py' cannot import mpidml (activate the venv or set PYTHON)" >&2; exit 2; }
fi

for b in "${benches[@]}"; do
  cmd="flock -x $lock $(command_for "$b")"
  if (( dry )); then
    echo "$cmd"
    continue
  fi
  echo "+ [$(date -u +%FT%TZ)] $cmd   (writes bench/results/$b/)" >&2
  $cmd
done
if (( ! dry )); then
  echo "done at commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'); record it in bench/results/MANIFEST.md" >&2
fi
