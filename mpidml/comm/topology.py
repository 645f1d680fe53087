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
           "TOPOLOGIES"]

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
    """2-D torus r × c (``torus_shape``): rank (a, b) talks to (a ± 1, b) and (a, b ± 1)."""
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


def one_peer_exponential(p: int, t: int) -> int:
    """Shift of round ``t`` in the one-peer exponential graph: rank i sends to
    (i + shift) mod p and receives from (i − shift) mod p."""
    if p == 1:
        return 0
    rounds = max(1, math.ceil(math.log2(p)))
    return (1 << (t % rounds)) % p
