"""Read-only and buffer-protocol inputs to the public collectives (issue 17): out of place
they are only read; in place a read-only buffer is refused on every rank with an error
that names ``out=``. At p = 1..4 (tests/mpi_progs/readonly_cases.py)."""

import os

import numpy as np
import pytest

from mpirun import HERE, run_case_report

PROG = os.path.join(HERE, "mpi_progs", "readonly_cases.py")


@pytest.mark.parametrize("p", [1, 2, 3, 4])
def test_read_only_inputs(p):
    names = run_case_report(PROG, p, timeout=240)
    assert {"collectives_shm_out_float32_40000_avg", "collectives_native_out_float64_7_sum",
            "ring_allreduce_in_place_read_only", "array_like_in_place", "array_array_in_place_ring"} <= set(names)
    assert len(names) > 150


def test_as_buffer_without_mpi():
    from mpidml.comm.common import allreduce_buffers, as_buffer

    ro = np.arange(4.0)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match=r"read-only .* pass out=np.empty_like\(buf\)"):
        allreduce_buffers(ro, None)
    out = np.empty(4)
    assert allreduce_buffers(ro, out)[1] is out
    with pytest.raises(ValueError, match="out has 3 x float64"):
        allreduce_buffers(ro, np.empty(3))
    with pytest.raises(ValueError, match="out is read-only"):
        allreduce_buffers(np.arange(4.0), ro)
    with pytest.raises(TypeError, match="1-D C-contiguous"):
        as_buffer(np.zeros((2, 2)), reduce=True, writeable=True)
    view = as_buffer(memoryview(bytearray(16)).cast("d"), reduce=True, writeable=True)
    assert view.dtype == np.float64 and view.size == 2 and view.flags.writeable
