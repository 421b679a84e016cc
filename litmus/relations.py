"""Binary relations over the n events of one candidate execution, as rows of bitmasks.

``rel[i]`` has bit j set when (i, j) is in the relation. Sets of events are single bitmasks.
n stays below a hundred for litmus tests, so Python ints make composition and closure cheap.
"""

from __future__ import annotations

from collections.abc import Iterable

Rel = list[int]


def empty(n: int) -> Rel:
    return [0] * n


def from_pairs(n: int, pairs: Iterable[tuple[int, int]]) -> Rel:
    rel = [0] * n
    for i, j in pairs:
        rel[i] |= 1 << j
    return rel


def union(*rels: Rel) -> Rel:
    out = list(rels[0])
    for rel in rels[1:]:
        for i, row in enumerate(rel):
            out[i] |= row
    return out


def inter(a: Rel, b: Rel) -> Rel:
    return [x & y for x, y in zip(a, b, strict=True)]


def diff(a: Rel, b: Rel) -> Rel:
    return [x & ~y for x, y in zip(a, b, strict=True)]


def restrict(rel: Rel, domain: int, range_: int) -> Rel:
    """[domain]; rel; [range_]."""
    return [(row & range_) if domain >> i & 1 else 0 for i, row in enumerate(rel)]


def seq(a: Rel, b: Rel) -> Rel:
    """a; b."""
    out = []
    for row in a:
        acc = 0
        while row:
            low = row & -row
            acc |= b[low.bit_length() - 1]
            row ^= low
        out.append(acc)
    return out


def inverse(rel: Rel) -> Rel:
    out = [0] * len(rel)
    for i, row in enumerate(rel):
        while row:
            low = row & -row
            out[low.bit_length() - 1] |= 1 << i
            row ^= low
    return out


def no_id(rel: Rel) -> Rel:
    return [row & ~(1 << i) for i, row in enumerate(rel)]


def plus(rel: Rel) -> Rel:
    """Transitive closure (Warshall over bitmask rows)."""
    out = list(rel)
    n = len(out)
    for k in range(n):
        bit, row_k = 1 << k, out[k]
        for i in range(n):
            if out[i] & bit:
                out[i] |= row_k
    return out


def star(rel: Rel) -> Rel:
    closed = plus(rel)
    return [row | (1 << i) for i, row in enumerate(closed)]


def opt(rel: Rel) -> Rel:
    """rel? (reflexive)."""
    return [row | (1 << i) for i, row in enumerate(rel)]


def acyclic(rel: Rel) -> bool:
    closed = plus(rel)
    return not any(row >> i & 1 for i, row in enumerate(closed))


def range_of(rel: Rel) -> int:
    acc = 0
    for row in rel:
        acc |= row
    return acc
