"""How alike two plate readings are, knowing what OCR confuses on plates.

An edit distance where swapping look-alike characters (O/0/D/Q, I/1/L, B/8, S/5, Z/2, G/6, T/7,
A/4) costs 0.3 and any other substitution, insertion or deletion costs 1. Two readings of one
plate usually differ by a look-alike or by a character lost at the edge of the plate.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

_LOOKALIKE_GROUPS = ("O0DQ", "I1L", "B8", "S5", "Z2", "G6", "T7", "A4")
LOOKALIKE_COST = 0.3
_CANON = {char: group[0] for group in _LOOKALIKE_GROUPS for char in group}


def canonical(plate: str) -> str:
    """The plate with each look-alike replaced by its group's first character (for search keys)."""
    return "".join(_CANON.get(char, char) for char in plate.upper())


def _substitution(a: str, b: str) -> float:
    if a == b:
        return 0.0
    return LOOKALIKE_COST if _CANON.get(a, a) == _CANON.get(b, b) else 1.0


@lru_cache(maxsize=65536)
def distance(a: str, b: str) -> float:
    """Look-alike-aware edit distance between two plate strings."""
    previous = [float(j) for j in range(len(b) + 1)]
    for i, char_a in enumerate(a, 1):
        current = [float(i)]
        for j, char_b in enumerate(b, 1):
            current.append(
                min(previous[j] + 1.0, current[j - 1] + 1.0, previous[j - 1] + _substitution(char_a, char_b))
            )
        previous = current
    return previous[-1]


def allowed(length: int) -> float:
    """How far apart two readings of one plate may be: one edit, or only look-alikes when short."""
    return 1.0 if length >= 5 else 2 * LOOKALIKE_COST


def within(a: str, b: str, limit: float) -> float | None:
    """`distance(a, b)` when it is at most `limit` (< 2), else None; fast for the usual cases."""
    if a == b:
        return 0.0
    if len(a) == len(b):
        # Equal lengths: indels come in pairs (cost >= 2), so only substitutions can stay under 2.
        cost = 0.0
        for char_a, char_b in zip(a, b, strict=True):
            if char_a != char_b:
                cost += _substitution(char_a, char_b)
                if cost > limit:
                    return None
        return cost
    longer, shorter = (a, b) if len(a) > len(b) else (b, a)
    if len(longer) - len(shorter) != 1 or limit < 1.0:
        return None
    # One deletion (cost 1) and no substitution is the only way to stay within a limit under 2.
    for i in range(len(longer)):
        if longer[:i] + longer[i + 1 :] == shorter:
            return 1.0
    return None


def similar(a: Iterable[str], b: Iterable[str]) -> float | None:
    """The smallest distance between any reading of `a` and any of `b`, if within `allowed`."""
    best: float | None = None
    b_list = list(b)
    for left in a:
        for right in b_list:
            d = within(left, right, allowed(min(len(left), len(right))))
            if d is not None and (best is None or d < best):
                best = d
                if best == 0.0:
                    return best
    return best


_KEY_ALPHABET = sorted({_CANON.get(char, char) for char in "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"})


def one_edit_keys(plate: str) -> set[str]:
    """The search keys of every reading within distance 1 of `plate`: its canonical key (look-alike
    swaps cost less than 1 and vanish in it) and every key one edit away from that (one deletion,
    insertion or substitution of a key character). A store looks these up in its key index instead
    of ranking every reading of about the right length."""
    key = canonical(plate)
    keys = {key}
    for index in range(len(key) + 1):
        for char in _KEY_ALPHABET:
            keys.add(key[:index] + char + key[index:])  # insertion
            if index < len(key):
                keys.add(key[:index] + char + key[index + 1 :])  # substitution
        if index < len(key):
            keys.add(key[:index] + key[index + 1 :])  # deletion
    return keys
