"""mpidml's own collectives on flat numpy buffers (mpi4py point-to-point underneath)."""

from .ring import counters, ring_allgather, ring_allreduce, ring_reduce_scatter, segment_counts

__all__ = ["counters", "ring_allgather", "ring_allreduce", "ring_reduce_scatter", "segment_counts"]
