"""Optimizers and schedules against hand-written recurrences."""

import numpy as np
import pytest

from mpidml.optim import SGD, Adam, lr_at, make_optimizer, scaled_lr


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


# ------------------------------------------------------------ hand-computed updates
def test_sgd_hand_computed_with_weight_decay():
    w = np.array([1.0, -2.0])
    opt = SGD(w, momentum=0.5, weight_decay=0.1)
    opt.step(np.array([0.2, 0.4]), lr=0.5)
    # v = [0.2, 0.4]; w = w·(1 − 0.5·0.1) − 0.5·v = [0.95 − 0.1, −1.9 − 0.2]
    np.testing.assert_allclose(w, [0.85, -2.1], rtol=1e-15)
    opt.step(np.array([-0.2, 0.0]), lr=0.5)
    # v = 0.5·[0.2, 0.4] + [−0.2, 0] = [−0.1, 0.2]; w = w·0.95 − 0.5·v
    np.testing.assert_allclose(w, [0.85 * 0.95 + 0.05, -2.1 * 0.95 - 0.1], rtol=1e-15)


def test_nesterov_hand_computed():
    w = np.array([1.0])
    opt = SGD(w, momentum=0.9, nesterov=True)
    opt.step(np.array([1.0]), lr=0.1)   # v = 1; w −= 0.1·(1 + 0.9) → 0.81
    np.testing.assert_allclose(w, [0.81], rtol=1e-15)
    opt.step(np.array([1.0]), lr=0.1)   # v = 1.9; w −= 0.1·(1 + 1.71) → 0.539
    np.testing.assert_allclose(w, [0.539], rtol=1e-14)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adam_hand_computed(dtype):
    w = np.array([1.0, -1.0, 0.5], dtype=dtype)
    opt = Adam(w, beta1=0.9, beta2=0.999, eps=1e-8)
    g = np.array([0.5, -2.0, 0.0], dtype=dtype)
    opt.step(g, lr=0.1)
    # step 1: m̂ = g, v̂ = g² → update lr·g/(|g| + eps) = ±0.1 (0 where g = 0)
    np.testing.assert_allclose(w, [0.9, -0.9, 0.5], rtol=1e-6)
    opt.step(np.array([1.0, -2.0, 0.0], dtype=dtype), lr=0.1)
    # step 2, first entry: m = 0.9·0.05 + 0.1·1 = 0.145; v = 0.999·0.00025 + 0.001·1 = 0.00124975
    m_hat, v_hat = 0.145 / (1 - 0.81), 0.00124975 / (1 - 0.999 ** 2)
    np.testing.assert_allclose(w[0], 0.9 - 0.1 * m_hat / (np.sqrt(v_hat) + 1e-8), rtol=1e-6)
    np.testing.assert_allclose(w[1:], [-0.8, 0.5], rtol=1e-6)
    assert w.dtype == dtype


def test_adamw_decoupled_weight_decay():
    w = np.array([2.0])
    Adam(w, weight_decay=0.5).step(np.array([0.0]), lr=0.1)  # zero gradient: only decay
    np.testing.assert_allclose(w, [2.0 * (1 - 0.1 * 0.5)], rtol=1e-15)


def test_make_optimizer_names():
    p = np.zeros(3)
    assert isinstance(make_optimizer("adam", p), Adam)
    assert make_optimizer("sgd", p).velocity is None
    assert make_optimizer("nesterov", p, momentum=0.8).nesterov
    with pytest.raises(ValueError):
        make_optimizer("lbfgs", p)


def test_step_schedule_warmup_and_linear_scaling():
    assert lr_at(0, 100, 1.0, "step", warmup_steps=5, decay_every=10) == pytest.approx(0.2)
    assert lr_at(4, 100, 1.0, "step", warmup_steps=5, decay_every=10) == pytest.approx(1.0)
    assert lr_at(14, 100, 1.0, "step", warmup_steps=5, decay_every=10) == pytest.approx(1.0)
    assert lr_at(15, 100, 1.0, "step", warmup_steps=5, decay_every=10) == pytest.approx(0.1)
    assert lr_at(35, 100, 1.0, "step", warmup_steps=5, decay_every=10, gamma=0.5) == pytest.approx(0.125)
    assert lr_at(10, 10, 1.0, "cosine", warmup_steps=2) == pytest.approx(0.0)
    assert scaled_lr(0.1, 8192) == pytest.approx(3.2)  # Goyal et al.: 0.1 per 256
    with pytest.raises(ValueError):
        lr_at(0, 10, 1.0, "step")


def test_optimizer_state_round_trip_continues_bit_for_bit():
    """What a checkpoint stores (state()) restores an optimizer that continues identically."""
    from mpidml.optim import make_optimizer

    for name in ("sgd", "momentum", "nesterov", "adam"):
        rng = np.random.default_rng(0)
        grads = [rng.standard_normal(6).astype(np.float32) for _ in range(6)]
        w1 = np.ones(6, np.float32)
        a = make_optimizer(name, w1, 0.9, 0.01)
        for g in grads:
            a.step(g, 0.1)
        w2 = np.ones(6, np.float32)
        b = make_optimizer(name, w2, 0.9, 0.01)
        for g in grads[:3]:
            b.step(g, 0.1)
        saved = {k: np.array(v) for k, v in b.state().items()}
        w3 = w2.copy()
        c = make_optimizer(name, w3, 0.9, 0.01)
        c.load_state(saved)
        for g in grads[3:]:
            c.step(g, 0.1)
        assert np.array_equal(w1, w3), name
