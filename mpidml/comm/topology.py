"""Gossip topologies, mixing weights and their consensus rates (pure; no MPI).

A topology is a list of neighbour lists: ``graph[i]`` are the ranks rank i exchanges
with (undirected: j in graph[i] ⇔ i in graph[j]). ``metropolis_hastings`` turns it
into a symmetric doubly-stochastic mixing matrix W; one gossip round is x ← W x, and
the disagreement ‖x − mean‖ shrinks per round by at most ``consensus_rate(W)`` =
max(|λ2|, |λn|). Closed forms with Metropolis–Hastings weights:

    ring (p ≥ 3)        λ_k = 1/3 + 2/3·cos(2πk/p)            gap ~ 4π²/(3p²)
    hypercube (p = 2^d) λ_k = (d + 1 − 2k)/(d + 1)            gap = 2/(d + 1)
    2-D torus r × c     λ_ab = (1 + 2cos(2πa/r) + 2cos(2πb/c))/5   (r, c ≥ 3)

Time-varying directed graphs (push-sum): ``one_peer_exponential(p, t)`` is the peer
rank i sends to in round t, i + 2^(t mod log2 p); over log2 p rounds (p a power of
two) the products of the column-stochastic matrices average exactly.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["ring", "torus", "torus_shape", "hypercube", "exponential", "build",
           "metropolis_hastings", "consensus_rate", "spectral_gap", "one_peer_exponential",
           "shape", "describe", "TOPOLOGIES"]

TOPOLOGIES = ("ring", "torus", "hypercube", "exponential")


def _undirected(p: int, edges) -> list[list[int]]:
    nbrs: list[set[int]] = [set() for _ in range(p)]
    for i, j in edges:
        if i != j:
            nbrs[i].add(j)
            nbrs[j].add(i)
    return [sorted(n) for n in nbrs]


def ring(p: int) -> list[list[int]]:
    """Each rank talks to rank ± 1 (mod p)."""
    return _undirected(p, ((i, (i + 1) % p) for i in range(p)))


def torus_shape(p: int) -> tuple[int, int]:
    """The most square r × c = p (r ≤ c)."""
    r = int(math.isqrt(p))
    while p % r:
        r -= 1
    return r, p // r


def torus(p: int) -> list[list[int]]:
    """2-D torus r × c (``torus_shape``): rank (a, b) talks to (a ± 1, b) and (a, b ± 1).
    For prime p the shape is 1 × p, a ring; 2 × 2 is the ring of 4, and r × c with r, c in
    {1, 2, 4} is a hypercube (``shape`` says so)."""
    r, c = torus_shape(p)
    edges = []
    for a in range(r):
        for b in range(c):
            i = a * c + b
            edges.append((i, ((a + 1) % r) * c + b))
            edges.append((i, a * c + (b + 1) % c))
    return _undirected(p, edges)


def hypercube(p: int) -> list[list[int]]:
    """Rank i talks to i XOR 2^k; p must be a power of two."""
    if p & (p - 1):
        raise ValueError(f"hypercube needs a power-of-two number of ranks, got {p}")
    d = p.bit_length() - 1
    return _undirected(p, ((i, i ^ (1 << k)) for i in range(p) for k in range(d)))


def exponential(p: int) -> list[list[int]]:
    """Static exponential graph: rank i talks to i ± 2^k (mod p) for 2^k < p."""
    edges, k = [], 1
    while k < p:
        edges += [(i, (i + k) % p) for i in range(p)]
        k *= 2
    return _undirected(p, edges)


def build(name: str, p: int) -> list[list[int]]:
    """Topology by name: ring, torus, hypercube, exponential."""
    table = {"ring": ring, "torus": torus, "hypercube": hypercube, "exponential": exponential}
    if name not in table:
        raise ValueError(f"unknown topology {name!r}; choose from {TOPOLOGIES}")
    return table[name](p)


def metropolis_hastings(graph: list[list[int]]) -> np.ndarray:
    """Symmetric doubly-stochastic W: W_ij = 1/(1 + max(deg i, deg j)) on edges, the
    rest of each row's mass on the diagonal."""
    p = len(graph)
    deg = [len(n) for n in graph]
    W = np.zeros((p, p))
    for i, nbrs in enumerate(graph):
        for j in nbrs:
            W[i, j] = 1.0 / (1 + max(deg[i], deg[j]))
        W[i, i] = 1.0 - W[i].sum()
    return W


def consensus_rate(W: np.ndarray) -> float:
    """max(|λ2|, |λn|) of a symmetric stochastic W: the per-round contraction of the
    disagreement (0 for p = 1)."""
    if W.shape[0] == 1:
        return 0.0
    lam = np.sort(np.linalg.eigvalsh(W))[::-1]
    return float(max(abs(lam[1]), abs(lam[-1])))


def spectral_gap(W: np.ndarray) -> float:
    return 1.0 - consensus_rate(W)


def _is_cycle(graph: list[list[int]]) -> bool:
    """Connected and every degree 2: the graph is a ring (up to relabelling)."""
    if len(graph) < 3 or any(len(n) != 2 for n in graph):
        return False
    seen, todo = {0}, [0]
    while todo:
        for j in graph[todo.pop()]:
            if j not in seen:
                seen.add(j)
                todo.append(j)
    return len(seen) == len(graph)


def _torus_is_hypercube(p: int) -> bool:
    # C_1 is a point, C_2 an edge (Q1), C_4 a square (Q2): r × c with r, c in {1, 2, 4} is Q_d
    return p >= 4 and set(torus_shape(p)) <= {1, 2, 4}


def shape(name: str, p: int) -> str:
    """The graph ``build(name, p)`` really is, in words, with the coincidences that make two
    names the same graph: "torus 2x2 (= ring at p=4; = hypercube at p=4)", "torus 1x7
    (= ring: 7 is prime)", "hypercube of dimension 3 (= torus 2x4 at p=8)", "exponential
    graph (i +- 2^k) (= complete graph at p=5)". ASCII only (it goes to logs)."""
    graph = build(name, p)
    r, c = torus_shape(p)
    text = {"torus": f"torus {r}x{c}", "hypercube": f"hypercube of dimension {p.bit_length() - 1}",
            "exponential": "exponential graph (i +- 2^k)"}.get(name, "ring")
    notes = []
    if name != "ring" and _is_cycle(graph):
        notes.append(f"= ring: {p} is prime" if name == "torus" and r == 1 and p > 3 else f"= ring at p={p}")
    if name == "torus" and _torus_is_hypercube(p):
        notes.append(f"= hypercube at p={p}")
    if name == "hypercube" and _torus_is_hypercube(p) and p > 4:
        notes.append(f"= torus {r}x{c} at p={p}")
    if name != "ring" and p > 3 and all(len(n) == p - 1 for n in graph):
        notes.append(f"= complete graph at p={p}")
    return text + (f" ({'; '.join(notes)})" if notes else "")


def describe(name: str, p: int, W: np.ndarray | None = None) -> str:
    """The start-up line's account of a topology: its real shape (``shape``), p, and the
    spectrum of its Metropolis–Hastings weights ``W`` (built when not given): λ2, the
    consensus rate max(|λ2|, |λn|) (the per-round contraction) and the spectral gap, e.g.
    "torus 2x2 (= ring at p=4; = hypercube at p=4) of 4 ranks: lambda2 0.3333, ..."."""
    if W is None:
        W = metropolis_hastings(build(name, p))
    if p == 1:
        return f"{shape(name, p)} of 1 rank (no neighbours)"
    lam = np.sort(np.linalg.eigvalsh(W))[::-1]
    rate = consensus_rate(W)
    l2, ln = (round(float(x), 4) + 0.0 for x in (lam[1], lam[-1]))      # + 0.0: no "-0.0000"
    return (f"{shape(name, p)} of {p} ranks: lambda2 {l2:.4f}, lambda_n {ln:.4f}, consensus rate "
            f"max(|lambda2|, |lambda_n|) {rate:.4f}, spectral gap {1.0 - rate:.4f}")


def one_peer_exponential(p: int, t: int) -> int:
    """Shift of round ``t`` in the one-peer exponential graph: rank i sends to
    (i + shift) mod p and receives from (i − shift) mod p."""
    if p == 1:
        return 0
    rounds = max(1, math.ceil(math.log2(p)))
    return (1 << (t % rounds)) % p
