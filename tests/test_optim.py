"""Optimizers and schedules against hand-written recurrences."""

import numpy as np
import pytest

from mpidml.optim import SGD, lr_at


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("momentum,nesterov", [(0.0, False), (0.9, False), (0.9, True)])
def test_sgd_matches_recurrence(dtype, momentum, nesterov):
    rng = np.random.default_rng(3)
    w = rng.standard_normal(7).astype(dtype)
    ref, v = w.astype(np.float64), np.zeros(7)
    opt = SGD(w, momentum=momentum, nesterov=nesterov)
    for t in range(5):
        g = rng.standard_normal(7).astype(dtype)
        g_copy = g.copy()
        opt.step(g, lr=0.1 * (t + 1))
        assert np.array_equal(g, g_copy)  # the gradient is not modified
        v = momentum * v + g
        ref -= 0.1 * (t + 1) * ((g + momentum * v) if nesterov else (v if momentum else g))
    assert w.dtype == dtype
    np.testing.assert_allclose(w, ref, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-6)


def test_lr_schedules():
    assert lr_at(0, 10, 1.0, "constant") == 1.0
    assert lr_at(0, 10, 1.0, "cosine") == 1.0
    assert lr_at(10, 10, 1.0, "cosine") == pytest.approx(0.0)
    assert lr_at(5, 10, 1.0, "cosine") == pytest.approx(0.5)
    assert lr_at(1, 10, 1.0, "cosine", warmup_steps=4) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        lr_at(0, 10, 1.0, "nope")
