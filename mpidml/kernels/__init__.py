"""Pure numba kernels (no MPI, no objects): loss, gradient and prediction on arrays."""
