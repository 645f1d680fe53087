"""Data layer: HDF5 schema, pure partition functions, per-rank loading, synthetic sets."""
