"""`platestream bench search`: exact and fuzzy search times over a store filled with N passes."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from platestream.aggregator.similarity import canonical
from platestream.aggregator.simulate import LOOKALIKE
from platestream.aggregator.stores import SearchableStore


@dataclass(frozen=True)
class SearchTimes:
    passes: int
    load_s: float
    exact_p50_ms: float
    exact_p99_ms: float
    fuzzy_p50_ms: float
    fuzzy_p99_ms: float
    fuzzy_hits: float  # mean matches per fuzzy search


def plates(count: int, seed: int) -> list[str]:
    """`count` plates of the common US forms (three letters and four digits and the like)."""
    rng = np.random.default_rng(seed)
    letters, digits = np.array(list("ABCDEFGHJKLMNPRSTUVWXYZ")), np.array(list("0123456789"))
    forms = ["@@@####", "###@@@", "@@@###", "#@@@###"]
    out = []
    for index in range(count):
        form = forms[index % len(forms)]
        out.append("".join(str(rng.choice(letters if c == "@" else digits)) for c in form))
    return out


def rows(texts: list[str], seed: int) -> tuple[Iterator[tuple[Any, ...]], Iterator[tuple[Any, ...]]]:
    """Group and candidate rows of one pass per text: the plate and two one-character misreads."""
    rng = np.random.default_rng(seed + 1)
    record = json.dumps({"data_type": "alpr_group"})  # the searched columns are what matters here

    def groups() -> Iterator[tuple[Any, ...]]:
        for index, plate in enumerate(texts):
            start = 1_700_000_000_000 + index * 1000
            yield (f"g{index}", str(index % 50), plate, canonical(plate), 90.0, start, start + 3000, "us-ca", record)

    def candidates() -> Iterator[tuple[Any, ...]]:
        for index, plate in enumerate(texts):
            yield (f"g{index}", plate, canonical(plate), 90.0)
            seen = {plate}
            for _ in range(2):
                position = int(rng.integers(len(plate)))
                wrong = plate[:position] + str(rng.choice(list("ABCDEFGH0123456789"))) + plate[position + 1 :]
                if wrong not in seen:
                    seen.add(wrong)
                    yield (f"g{index}", wrong, canonical(wrong), 60.0)

    return groups(), candidates()


def bench_search(store: SearchableStore, passes: int, *, queries: int = 200, seed: int = 0) -> SearchTimes:
    texts = plates(passes, seed)
    started = time.perf_counter()
    groups, candidates = rows(texts, seed)
    store.load_rows(groups, candidates)
    load_s = time.perf_counter() - started
    rng = np.random.default_rng(seed + 2)
    wanted = [texts[int(i)] for i in rng.integers(0, passes, queries)]
    exact = _times(store, wanted, fuzzy=False)
    misread = []  # what a person types from a photo: a look-alike or one character off
    for plate in wanted:
        position = int(rng.integers(len(plate)))
        char = LOOKALIKE.get(plate[position], "X")
        misread.append(plate[:position] + char + plate[position + 1 :])
    fuzzy = _times(store, misread, fuzzy=True)
    hits = statistics.mean(len(store.search(plate, fuzzy=True)) for plate in misread[:50])
    return SearchTimes(passes, round(load_s, 1), *exact, *fuzzy, round(hits, 1))


def _times(store: SearchableStore, wanted: list[str], *, fuzzy: bool) -> tuple[float, float]:
    for plate in wanted[:5]:  # warm the caches
        store.search(plate, fuzzy=fuzzy)
    times = []
    for plate in wanted:
        started = time.perf_counter()
        store.search(plate, fuzzy=fuzzy)
        times.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(times), 2), round(float(np.percentile(times, 99)), 2)
