"""Pure partition functions: which rows a rank owns. No MPI, unit-tested directly.

Balanced block partition: ``n`` rows over ``parts`` parts, sizes differ by at most
one, the remainder going to the first parts; parts are contiguous, in order,
never overlap and together cover ``[0, n)`` exactly (parts > n gives empty parts).
"""

__all__ = ["block_counts", "shard_rows"]


def block_counts(n: int, parts: int) -> list[int]:
    """Sizes of the ``parts`` balanced blocks of ``n`` items (first ``n % parts`` get one more)."""
    if parts < 1:
        raise ValueError(f"parts must be >= 1, got {parts}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    base, rem = divmod(n, parts)
    return [base + 1 if i < rem else base for i in range(parts)]


def shard_rows(n: int, size: int, rank: int) -> tuple[int, int]:
    """Half-open row range ``(start, stop)`` owned by ``rank`` of ``size`` ranks over ``n`` rows."""
    if not 0 <= rank < size:
        raise ValueError(f"rank {rank} out of range for size {size}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    base, rem = divmod(n, size)
    start = rank * base + min(rank, rem)
    return start, start + base + (1 if rank < rem else 0)
