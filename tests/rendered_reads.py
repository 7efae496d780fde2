"""Rendered plates in street scenes, read by an engine: how the shipped models' tests count."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from platestream.training.render import PLATE_MAKERS, Assets, plate_text
from platestream.workers.engine import Engine, Options
from platestream.workers.synthetic import street_scene


def read_rendered(engine: Engine, assets: Assets, region: str, views: Sequence[dict[str, Any]], *, seed: int,
                  count: int = 12) -> tuple[int, int]:  # fmt: skip
    """`count` plates of `region`, each in a scene with the next of `views` (street_scene's
    options): how many the engine reads exactly, and for how many the truth is among the candidates."""
    rng = np.random.default_rng(seed)
    first, among = 0, 0
    for index in range(count):
        text, splits = plate_text(region, rng)
        plate, _ = PLATE_MAKERS[region](text, splits, assets, rng)
        image = street_scene("", seed=index, plate=plate, **views[index % len(views)])
        (result,) = engine.recognize([image], Options(country=region))
        if result.plates:
            first += result.plates[0].plate == text
            among += text in [candidate.plate for candidate in result.plates[0].candidates]
    return first, among
