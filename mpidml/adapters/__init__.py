"""Adapters that expose another framework's model as an ``mpidml.Model``.

Each adapter lives in its own module and imports its framework only when used, so
``import mpidml`` never needs it: ``mpidml.adapters.torch.TorchModel`` needs the
``[torch]`` extra (``pip install 'mpidml[torch]'``).
"""

__all__: list[str] = []
