"""The compressed reductions (comm/compressed.py) under mpiexec at p = 1, 2, 3, 4: bit-for-bit
against numpy simulations of their summation order, float32 and float64, identical bits on
every rank, exact byte counts (tests/mpi_progs/compressed_cases.py, one launch per size)."""

import os

import pytest

from mpirun import HERE, run_case_report

PROG = os.path.join(HERE, "mpi_progs", "compressed_cases.py")


@pytest.mark.parametrize("p", [1, 2, 3, 4])
def test_compressed_reductions(p):
    names = run_case_report(PROG, p, timeout=300)
    assert {"fp16_float32_n4099", "fp16_float64_n7", "sparse_float64_n101_k10_overlap", "qsgd_float32_n1001",
            "topk_reduce_sum_auto_float64", "fp16_no_tail_half_of_fp32_ring_float32"} <= set(names)
    assert len(names) > 120
