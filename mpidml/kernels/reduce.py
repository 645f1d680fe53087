"""Reduction kernels for the collectives (pure @njit, no MPI).

``sum_rows_into`` sums the rows of a (p, capacity) table — the p ranks' slots of a
shared-memory window — over columns [a, b) into ``out`` in one pass over the
inputs, adding in rank order 0..p-1 (so the result's bits do not depend on which
rank computes it). ``out`` may alias a row of the table: each block is summed into
the scratch ``acc`` before it is stored.
"""

from numba import njit

__all__ = ["sum_rows_into"]


@njit(cache=True, nogil=True)
def sum_rows_into(table, a, b, out, acc):
    p = table.shape[0]
    block = acc.shape[0]
    for start in range(a, b, block):
        m = min(b, start + block) - start
        for j in range(m):
            acc[j] = table[0, start + j]
        for i in range(1, p):
            for j in range(m):
                acc[j] += table[i, start + j]
        for j in range(m):
            out[start + j] = acc[j]
