"""Topologies and mixing weights against closed forms (pure, no MPI)."""

import math

import numpy as np
import pytest

from mpidml.comm import topology as topo


@pytest.mark.parametrize("name,ps", [("ring", [2, 3, 4, 5, 8, 16]), ("torus", [4, 6, 9, 12, 16]),
                                     ("hypercube", [1, 2, 4, 8, 16, 32]), ("exponential", [3, 5, 8, 16])])
def test_graphs_are_symmetric_and_weights_doubly_stochastic(name, ps):
    for p in ps:
        g = topo.build(name, p)
        assert all(i not in g[i] for i in range(p))
        assert all(i in g[j] for i in range(p) for j in g[i])
        W = topo.metropolis_hastings(g)
        assert np.allclose(W, W.T) and np.allclose(W.sum(0), 1) and np.allclose(W.sum(1), 1)
        assert (W >= -1e-15).all()


@pytest.mark.parametrize("p", [3, 4, 5, 8, 13, 32])
def test_ring_rate_closed_form(p):
    lam = [1 / 3 + 2 / 3 * math.cos(2 * math.pi * k / p) for k in range(p)]
    expected = sorted((abs(x) for x in lam), reverse=True)[1]
    assert topo.consensus_rate(topo.metropolis_hastings(topo.ring(p))) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("d", [1, 2, 3, 4, 5, 6])
def test_hypercube_gap_closed_form(d):
    W = topo.metropolis_hastings(topo.hypercube(2 ** d))
    assert topo.spectral_gap(W) == pytest.approx(2 / (d + 1), abs=1e-12)


@pytest.mark.parametrize("p", [9, 12, 16, 20])
def test_torus_rate_closed_form(p):
    r, c = topo.torus_shape(p)
    assert r >= 3 and c >= 3
    lam = [(1 + 2 * math.cos(2 * math.pi * a / r) + 2 * math.cos(2 * math.pi * b / c)) / 5
           for a in range(r) for b in range(c)]
    expected = sorted((abs(x) for x in lam), reverse=True)[1]
    assert topo.consensus_rate(topo.metropolis_hastings(topo.torus(p))) == pytest.approx(expected, abs=1e-12)


def test_gap_ordering_ring_torus_hypercube():
    W = {n: topo.metropolis_hastings(topo.build(n, 16)) for n in ("ring", "torus", "hypercube")}
    gaps = {n: topo.spectral_gap(w) for n, w in W.items()}
    # 4x4 torus and 16-hypercube both have gap exactly 0.4: compare up to eigensolver rounding
    assert gaps["ring"] < gaps["torus"] <= gaps["hypercube"] + 1e-12
    assert gaps["torus"] == pytest.approx(0.4, abs=1e-12) and gaps["hypercube"] == pytest.approx(0.4, abs=1e-12)


@pytest.mark.parametrize("p", [2, 4, 8, 16])
def test_one_peer_exponential_averages_exactly_in_log2p_rounds(p):
    x = np.random.default_rng(p).standard_normal(p)
    for t in range(int(math.log2(p))):
        s = topo.one_peer_exponential(p, t)
        x = 0.5 * (x + np.roll(x, s))  # keep half, push half to rank + s
    assert np.allclose(x, x.mean(), atol=1e-12)


def test_hypercube_rejects_non_power_of_two():
    with pytest.raises(ValueError):
        topo.hypercube(6)
    with pytest.raises(ValueError):
        topo.build("star", 4)


@pytest.mark.parametrize("name,p,expect", [
    ("torus", 4, "torus 2x2 (= ring at p=4; = hypercube at p=4) of 4 ranks"),
    ("hypercube", 4, "hypercube of dimension 2 (= ring at p=4) of 4 ranks"),
    ("torus", 5, "torus 1x5 (= ring: 5 is prime)"),
    ("torus", 7, "torus 1x7 (= ring: 7 is prime)"),
    ("torus", 8, "torus 2x4 (= hypercube at p=8)"),
    ("hypercube", 8, "hypercube of dimension 3 (= torus 2x4 at p=8)"),
    ("torus", 9, "torus 3x3 of 9 ranks"),
    ("exponential", 5, "(= complete graph at p=5)"),
    ("ring", 5, "ring of 5 ranks: lambda2 0.5393, lambda_n -0.2060, consensus rate max(|lambda2|, |lambda_n|) "
                "0.5393, spectral gap 0.4607"),
    ("ring", 8, "consensus rate max(|lambda2|, |lambda_n|) 0.8047"),
    ("exponential", 8, "consensus rate max(|lambda2|, |lambda_n|) 0.3333"),
])
def test_describe_names_the_real_graph_and_its_spectrum(name, p, expect):
    text = topo.describe(name, p)
    assert expect in text, text
    assert text.isascii() and "-0.0000" not in text


@pytest.mark.parametrize("p", range(3, 19))
def test_every_claimed_coincidence_holds(p):
    """Whatever ``shape`` says equals what: the same mixing spectrum (cycles: also 2-regular
    and connected); a graph not said to be a ring is not one."""
    spectrum = {}
    for name in topo.TOPOLOGIES:
        if name == "hypercube" and p & (p - 1):
            continue
        spectrum[name] = np.linalg.eigvalsh(topo.metropolis_hastings(topo.build(name, p)))
    for name in spectrum:
        text = topo.shape(name, p)
        for other in ("ring", "torus", "hypercube"):
            if f"= {other}" in text:
                assert np.allclose(spectrum[name], spectrum[other], atol=1e-12), (name, p, text)
        g = topo.build(name, p)
        is_cycle = all(len(n) == 2 for n in g)
        assert (name == "ring" or "= ring" in text) == is_cycle, (name, p, text)
        if "complete graph" in text:
            assert all(len(n) == p - 1 for n in g)
