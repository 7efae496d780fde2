"""Top-N plate readings from per-character probabilities, and the choice among them by template.

Pure functions over plain data, like OpenALPR's post-processing: every character position
offers its likeliest characters, or may be dropped (a bolt, an emblem or a sticker read as a
character); readings are scored by the product of their choices' probabilities.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from platestream.workers.engine.base import Candidate
from platestream.workers.engine.templates import region_fits

Alternatives = Sequence[tuple[str, float]]  # (character, probability), likeliest first

MIN_PLATE_LENGTH = 2
MAX_PLATE_LENGTH = 10
_FLOOR = 1e-4
BEAM_WIDTH = 64


# Characters a country's plates do not use, read as the one they are mistaken for. US plates
# are issued without the letter O (the digit 0 is used), as OpenALPR's US post-processing assumes.
UNUSED_CHARACTERS: dict[str, dict[str, str]] = {"us": {"O": "0"}}


# Characters a country's plates draw alike, so that no reader can tell them apart from the glyph:
# the letter O and the digit 0 on most European plates (one oval for both in Slovakia, Czechia,
# Poland...) and Brazil's. Each is offered for the other at TWIN_SHARE of its probability, and
# only where the reading without them fits a form already: a twin may turn one form into a more
# common one (BA302OZ, @@###@@, over BA3020Z, @@####@), never a reading of a form missing from the
# table into one the table has (a Polish diplomatic W053011 stays W053011, not WO53011).
TWINS: dict[str, tuple[tuple[str, str], ...]] = {"eu": (("O", "0"),), "br": (("O", "0"),)}
TWIN_SHARE = 0.05


def merge_unused(positions: Sequence[Alternatives], country: str) -> list[list[tuple[str, float]]]:
    """Per position, the alternatives with the country's unused characters folded into the
    characters they are mistaken for (probabilities added)."""
    table = UNUSED_CHARACTERS.get(country.lower(), {})
    merged_positions = []
    for alternatives in positions:
        merged: dict[str, float] = {}
        for char, probability in alternatives:
            target = table.get(char, char)
            merged[target] = min(1.0, merged.get(target, 0.0) + probability)
        merged_positions.append(sorted(merged.items(), key=lambda item: -item[1]))
    return merged_positions


def offer_twins(positions: Sequence[Alternatives], country: str) -> list[list[tuple[str, float]]] | None:
    """The positions with each character's twin (`TWINS`) offered at TWIN_SHARE of its probability
    where the reader gave the twin less, the difference moved from the character: a position's
    total, and so the cost of dropping it (`readings`), stays the reader's. None when the country
    has no twins or none occurs."""
    twins = {a: b for pair in TWINS.get(country.lower(), ()) for a, b in (pair, pair[::-1])}
    offered, changed = [], False
    for alternatives in positions:
        probabilities = dict(alternatives)
        for char, probability in alternatives:
            twin = twins.get(char)
            if twin is not None and TWIN_SHARE * probability > probabilities.get(twin, 0.0):
                probabilities[char] -= TWIN_SHARE * probability - probabilities.get(twin, 0.0)
                probabilities[twin] = TWIN_SHARE * probability
                changed = True
        offered.append(sorted(probabilities.items(), key=lambda item: -item[1]))
    return offered if changed else None


@dataclass(frozen=True)
class Scored:
    plate: str
    log_score: float
    confidence: float  # 0-100


def readings(positions: Sequence[Alternatives], *, limit: int = 32) -> list[Scored]:
    """The `limit` likeliest readings, best first. Dropping a position costs the chance that it
    holds no character: 1 minus its alternatives' probabilities together (a thin I read as I or
    1 is surely a character even when neither is likelier than not)."""
    beam: dict[str, float] = {"": 0.0}
    for alternatives in positions:
        if not alternatives:
            continue
        grown: dict[str, float] = {}
        drop = math.log(max(_FLOOR, 1.0 - sum(probability for _, probability in alternatives)))
        for text, score in beam.items():
            _keep_best(grown, text, score + drop)
            for char, probability in alternatives:
                _keep_best(grown, text + char, score + math.log(max(_FLOOR, probability)))
        beam = dict(sorted(grown.items(), key=lambda item: -item[1])[:BEAM_WIDTH])
    count = max(1, sum(1 for alternatives in positions if alternatives))
    scored = [
        Scored(text, score, round(100.0 * math.exp(score / count), 3))
        for text, score in beam.items()
        if MIN_PLATE_LENGTH <= len(text) <= MAX_PLATE_LENGTH
    ]
    scored.sort(key=lambda item: -item.log_score)
    return scored[:limit]


def _keep_best(table: dict[str, float], text: str, score: float) -> None:
    if score > table.get(text, -math.inf):
        table[text] = score


@dataclass(frozen=True)
class Choice:
    plate: str
    confidence: float
    region: str
    region_confidence: float
    matches_template: bool
    candidates: tuple[Candidate, ...]


def choose(
    scored: Sequence[Scored],
    templates: dict[str, list[str]],
    *,
    topn: int,
    strict: bool = False,
    max_template_gap: float = 3.0,
) -> Choice | None:
    """The reading to report: the most plausible one that fits a region's pattern, unless it is
    far less likely than the best reading (log-score gap over `max_template_gap`). In strict mode
    a reading must fit a pattern. None when nothing qualifies.

    Plausibility adds to a reading's log-score the log of its prior: the chance that a plate of a
    region drawn at random from the table has its form (regions equally likely, each region's
    patterns equally likely). A form many regions issue, like the @@###@@ of six EU countries,
    beats a rare one when the characters alone barely decide."""
    if not scored:
        return None
    fits = region_fits([item.plate for item in scored], templates)
    best = scored[0]
    fitting = [
        item for item in scored if fits[item.plate] and (strict or item.log_score >= best.log_score - max_template_gap)
    ]
    if fitting:
        # A reader more often mistakes a character than invents or loses one: among the readings
        # that fit, one as long as the best reading comes first.
        best = min(
            fitting,
            key=lambda item: (
                len(item.plate) != len(best.plate),
                -(item.log_score + math.log(sum(fits[item.plate].values()) / len(templates))),
            ),
        )
    elif strict:
        return None
    shares = fits[best.plate]
    region = max(shares, key=shares.__getitem__, default="")
    # A whole percentage, as OpenALPR and Rekor send it.
    region_confidence = float(round(100.0 * shares[region] / sum(shares.values()))) if shares else 0.0
    ordered = [best, *(item for item in scored if item is not best)]
    if strict:
        ordered = [item for item in ordered if fits[item.plate]]
    candidates = tuple(Candidate(item.plate, item.confidence, bool(fits[item.plate])) for item in ordered[:topn])
    return Choice(best.plate, best.confidence, region, region_confidence, bool(shares), candidates)


def read_plate(
    characters: Sequence[Alternatives],
    country: str,
    templates: dict[str, list[str]],
    *,
    topn: int,
    strict: bool = False,
) -> Choice | None:
    """A reader's per-position alternatives to the plate to report: the country's unused characters
    folded, its readings chosen by `templates`, and twins (`offer_twins`) let choose between forms
    where the reading fits one (in strict mode, where a form is required, whatever it fits)."""
    positions = merge_unused(characters, country)
    choice = choose(readings(positions), templates, topn=topn, strict=strict)
    twinned = offer_twins(positions, country)
    if twinned is None or not (strict or (choice is not None and choice.matches_template)):
        return choice
    return choose(readings(twinned), templates, topn=topn, strict=strict) or choice
