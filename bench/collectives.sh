#!/usr/bin/env bash
# Allreduce microbenchmarks of mpidml's collectives vs plain MPI (MPICH wheel), every
# configuration a user can have (private/window buffer x in place/out of place, each against
# native in the same mode) and the memory bound, in one run per p. Sizes step by 2x, so
# 64 KiB (auto's switch), 128 KiB and 256 KiB are all rows.
# Writes bench/results/allreduce-p{P}.{txt,json,png}.
# Usage: bench/collectives.sh [P ...]   (default: 2 3 4; p > 2 oversubscribes 2 cores)
# Timed: run it under `flock -x /tmp/cpu.lock` on a machine nobody else is using.
set -euo pipefail
cd "$(dirname "$0")/.."
out=bench/results
mkdir -p "$out"
for p in ${@:-2 3 4}; do
  stem=$out/allreduce-p$p
  mpiexec -n "$p" python -m mpidml.bench allreduce -m 4:64M -f 2 -r 5 \
    --impl auto,native,ring,rd,shm --all-configs --fit --json "$stem.json" --plot "$stem.png" | tee "$stem.txt"
done
