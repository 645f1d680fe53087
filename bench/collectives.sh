#!/usr/bin/env bash
# Allreduce microbenchmarks of mpidml's collectives vs the MPI library (MPICH wheel).
# Writes bench/results/allreduce-p{P}-{inplace,outofplace}.{txt,json,png}.
# Usage: bench/collectives.sh [P ...]   (default: 2 3 4; p > 2 oversubscribes 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
out=bench/results
mkdir -p "$out"
for p in "${@:-2 3 4}"; do
  for mode in inplace outofplace; do
    flag=$([[ $mode == inplace ]] && echo --inplace || true)
    stem=$out/allreduce-p$p-$mode
    mpiexec -n "$p" python -m mpidml.bench allreduce -m 4:64M -f 4 -r 7 \
      --impl auto,native,ring,rd,shm $flag --fit --json "$stem.json" --plot "$stem.png" | tee "$stem.txt"
  done
done
