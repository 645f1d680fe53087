"""A PyTorch MLP for the CLI: ``--model torch_mlp:TorchMLP`` (tests/test_torch_adapter.py).

``build`` is what ``--model package.module:ClassName`` calls with the data's shape."""

import torch

from mpidml.adapters.torch import TorchModel


class TorchMLP(TorchModel):
    @classmethod
    def build(cls, d, n_classes=2, dtype=None, l2=0.0):
        net = torch.nn.Sequential(torch.nn.Linear(d, 16), torch.nn.ReLU(), torch.nn.Linear(16, n_classes))
        return cls(net, torch.nn.CrossEntropyLoss(reduction="sum"), l2=l2)
