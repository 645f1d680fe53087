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
