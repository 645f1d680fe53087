"""Codecs (pure): round trips, error-feedback invariant, unbiasedness, payload sizes."""

import numpy as np
import pytest

from mpidml.comm.codecs import FP16, QSGD, TopK, make_codec


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fp16_round_trip(dtype):
    g = np.random.default_rng(0).standard_normal(1000).astype(dtype)
    out = np.zeros_like(g)
    p = FP16().encode(g)
    FP16().decode_add(p, out)
    assert p.nbytes == 2000
    np.testing.assert_allclose(out, g, rtol=1e-3, atol=1e-3)


def test_topk_sends_the_largest_and_feedback_is_exact():
    rng = np.random.default_rng(1)
    n, k = 200, 10
    codec = TopK(n, k, np.float64)
    total_in = np.zeros(n)
    total_sent = np.zeros(n)
    for _step in range(25):
        g = rng.integers(-50, 50, n).astype(np.float64)   # integers: sums are exact
        before = codec.residual + g
        p = codec.encode(g)
        assert p.arrays["idx"].size == k and p.nbytes == k * (4 + 8)
        chosen = np.abs(before[p.arrays["idx"]]).min()
        rest = np.delete(np.abs(before), p.arrays["idx"])
        assert chosen >= rest.max()                       # the k largest were sent
        total_in += g
        codec.decode_add(p, total_sent)
        assert np.array_equal(total_sent + codec.residual, total_in)   # sent + residual = inputs


def test_qsgd_unbiased_and_bounded():
    g = np.random.default_rng(2).standard_normal(64)
    codec = QSGD(levels=4, seed=3)
    acc = np.zeros(64)
    draws = 4000
    for _ in range(draws):
        p = codec.encode(g)
        assert np.abs(p.arrays["q"]).max() <= 4 and p.nbytes == 4 + 64
        codec.decode_add(p, acc)
    # standard error of the mean per element <= norm/levels/sqrt(draws)
    tol = 4 * np.linalg.norm(g) / 4 / np.sqrt(draws)
    assert np.abs(acc / draws - g).max() < tol


def test_qsgd_zero_vector_and_bad_args():
    out = np.zeros(5)
    codec = QSGD(8)
    codec.decode_add(codec.encode(np.zeros(5)), out)
    assert not out.any()
    with pytest.raises(ValueError):
        QSGD(200)
    with pytest.raises(ValueError):
        make_codec("zip", 10)
    with pytest.raises(ValueError):
        TopK(10, 0)


def test_topk_momentum_correction_is_dgc():
    """u <- mu u + g; v <- v + u; send top-k of v; v and u zeroed where sent (Lin et al. 2018)."""
    rng = np.random.default_rng(4)
    n, k, mu = 50, 5, 0.9
    codec = TopK(n, k, np.float64, momentum=mu)
    u, v = np.zeros(n), np.zeros(n)
    for _step in range(20):
        g = rng.standard_normal(n)
        u = mu * u + g
        v = v + u
        p = codec.encode(g)
        idx = p.arrays["idx"]
        assert set(idx) == set(np.argsort(-np.abs(v))[:k])
        np.testing.assert_allclose(p.arrays["val"], v[idx], rtol=1e-12)
        v[idx] = 0
        u[idx] = 0
        np.testing.assert_allclose(codec.residual, v, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(codec.velocity, u, rtol=1e-12, atol=1e-12)
    assert set(codec.state()) == {"residual", "topk_velocity"}
    # k = n: everything is sent every step and the masked momentum never builds up
    full = TopK(4, 4, np.float64, momentum=mu)
    for _ in range(3):
        g = rng.standard_normal(4)
        out = np.zeros(4)
        full.decode_add(full.encode(g), out)
        np.testing.assert_array_equal(out, g)
    with pytest.raises(ValueError, match="error feedback"):
        TopK(10, 2, momentum=0.5, error_feedback=False)


def test_topk_k_floor_with_momentum():
    from mpidml.comm.codecs import DGC_MIN_K, topk_k

    assert topk_k(101, 0.01) == 1                      # plain error feedback: as asked
    assert topk_k(101, 0.01, momentum=0.9) == DGC_MIN_K == 8
    assert topk_k(5, 0.01, momentum=0.9) == 5           # never more than n
    assert topk_k(10_000, 0.01, momentum=0.9) == 100
    assert make_codec("topk", 101, ratio=0.01, momentum=0.9).k == 8


def test_topk_exchange_choice_by_bytes():
    from mpidml.comm.codecs import topk_exchange

    n, k, p = 1000, 10, 4
    disjoint = np.zeros(n, np.float32)
    disjoint[np.arange(0, n, n // (p * k))[:p * k]] = 1.0       # p·k nonzeros: no overlap
    assert topk_exchange(k, disjoint, p) == "allgather"
    overlap = np.zeros(n, np.float32)
    overlap[:k] = 1.0                                           # every rank chose the same k
    assert topk_exchange(k, overlap, p) == "reduce"
    assert topk_exchange(k, overlap, 2) == "allgather"          # p = 2: one payload is never worse
    assert topk_exchange(k, overlap, 1) == "allgather"
    dense = np.ones(40, np.float32)                            # p·k pairs > n values: dense cap
    assert topk_exchange(8, dense, 8) == "reduce"
