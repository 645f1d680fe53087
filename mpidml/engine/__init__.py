"""The training engine: configuration in parts (``config``), the ``Trainer`` (``trainer``)
with its set-up (``setup``), loop shapes (``loop``), evaluation (``evaluation``) and hooks
(``hooks``). Algorithms (``mpidml.algos``) and models (``mpidml.models``) plug in through
their registries and protocols; the engine knows none of them by name."""

__all__ = ["Trainer", "TrainConfig", "Hook"]


def __getattr__(name):
    # lazy: importing the package must not import numpy-heavy modules or MPI
    if name == "Trainer":
        from .trainer import Trainer
        return Trainer
    if name == "TrainConfig":
        from .config import TrainConfig
        return TrainConfig
    if name == "Hook":
        from .hooks import Hook
        return Hook
    raise AttributeError(f"module 'mpidml.engine' has no attribute {name!r}")
