"""Training algorithms behind one interface (``base.Algorithm``), found by name in a registry.

    sync         BSP: allreduce of the gradient every step (optionally compressed)
    local_sgd    local SGD / model averaging every τ steps; post-local SGD
    easgd        elastic averaging SGD, synchronous (eamsgd: with Nesterov momentum)
    easgd_async  EASGD where each worker meets the centre (a dedicated rank) at its own pace
    gossip       D-PSGD over a topology with Metropolis–Hastings weights
    pushsum      stochastic gradient push on a time-varying one-peer exponential graph
    choco        CHOCO-SGD: gossip of compressed differences
    ps           parameter server: BSP / SSP / ASGD / DC-ASGD (--servers, --staleness, --dc-lambda)
    admm         consensus ADMM: local proximal steps, z-update (with the L2 term) by allreduce
    feature_parallel  model parallelism: column blocks of X and w, partial margins allreduced

A new algorithm is one new module: a subclass of ``Algorithm`` decorated with
``@register("name", config=MyConfig)``. Every module of this package is imported when
the registry is first asked (so a module dropped in here is found); an algorithm in
the user's own package is named ``--algo package.module:ClassName`` (or registered by
importing that module before calling ``mpidml.fit``). The engine asks the class —
never the name — what it needs: roles of the ranks, data plan, loop shape, options.
"""

from __future__ import annotations

import importlib
import pkgutil

from .base import AlgoContext, Algorithm, Control, Outcome

__all__ = ["register", "algorithm_class", "algorithm_names", "make_algorithm", "Algorithm", "AlgoContext",
           "Control", "Outcome"]

_REGISTRY: dict[str, type[Algorithm]] = {}
_discovered = False


def register(name: str, config: type | None = None):
    """Class decorator: make an ``Algorithm`` subclass available as ``--algo name``.

    Args:
        name: the ``--algo`` value (also set as the class's ``name``).
        config: a dataclass of the algorithm's own options, fields made with
            ``mpidml.options.knob`` (they become ``--flags`` and TOML keys).

    Example::

        @register("avg_every_step")
        class AverageEveryStep(Algorithm):
            def step(self, step, loss, count, lr, stop): ...
    """
    def decorate(cls):
        if not (isinstance(cls, type) and issubclass(cls, Algorithm)):
            raise TypeError(f"@register({name!r}) needs an Algorithm subclass, got {cls!r}")
        old = _REGISTRY.get(name)
        if old is not None and old is not cls and old.__qualname__ != cls.__qualname__:
            raise ValueError(f"algorithm name {name!r} is taken by {old.__module__}.{old.__qualname__}")
        cls.name = name
        if config is not None:
            cls.Config = config
        _REGISTRY[name] = cls
        return cls
    return decorate


def _discover() -> None:
    global _discovered
    if not _discovered:
        _discovered = True
        for info in pkgutil.iter_modules(__path__):
            if not info.name.startswith("_") and info.name != "base":
                importlib.import_module(f"{__name__}.{info.name}")


#: how the built-in algorithms are listed (help, messages); others follow in registration order
_LISTING = ("sync", "local_sgd", "easgd", "eamsgd", "easgd_async", "gossip", "pushsum", "choco", "ps", "admm",
            "feature_parallel")


def algorithm_names() -> tuple[str, ...]:
    """Every registered ``--algo`` name (built-in ones first, in a stable order)."""
    _discover()
    return tuple(sorted(_REGISTRY, key=lambda n: (_LISTING.index(n) if n in _LISTING else len(_LISTING))))


def algorithm_class(name: str) -> type[Algorithm]:
    """The class behind ``--algo name``; ``name`` may be ``package.module:ClassName``."""
    _discover()
    if name in _REGISTRY:
        return _REGISTRY[name]
    if ":" in name:
        module, _, attr = name.partition(":")
        try:
            cls = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise ValueError(f"--algo {name}: cannot load {attr!r} from module {module!r} ({exc})") from None
        if not (isinstance(cls, type) and issubclass(cls, Algorithm)):
            raise ValueError(f"--algo {name}: {cls!r} is not a subclass of mpidml.algos.Algorithm")
        return cls
    raise ValueError(f"unknown --algo {name!r}; choose from {', '.join(_REGISTRY)} "
                     f"or give package.module:ClassName")


def make_algorithm(name: str, ctx: AlgoContext) -> Algorithm:
    """Collective: build algorithm ``name`` for one rank of the run described by ``ctx``."""
    return algorithm_class(name)(ctx)
