"""Labels for the unlabelled European crops. The `eu2_crop_*` files are named after their plates
(mostly square, two-line plates): the name is the label. The others were read by the current
engine's reader (PP-OCR), and a reading is kept only where the crop is a one-line plate, an EU form
fits the reading and the reader is sure of it. What is kept is written to `labels/eu.tsv` and committed, so
the training data stays the same from run to run and can be looked at."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from platestream.training.crops import eu_candidates, name_hint, read_crop

MIN_CONFIDENCE = 90.0  # the reader's mean per-character confidence, 0-100
# The reader reads one text line: a square or two-line plate would be labelled with half its text.
MIN_ASPECT = 2.8


@dataclass(frozen=True)
class Label:
    file: str
    text: str
    confidence: float
    source: str  # "name" (the file's name), "reader" (a sure reading of an EU form)


def label_eu(root: Path) -> Iterator[Label]:
    """A label for each European crop under `root` that can be trusted; the rest are skipped."""
    from platestream.workers.engine.candidates import read_plate
    from platestream.workers.engine.default import TextReader
    from platestream.workers.engine.templates import regions_for

    reader = TextReader(threads=1, providers=["CPUExecutionProvider"])
    templates = regions_for("eu")
    for path in eu_candidates(root):
        hint = name_hint(path)
        if hint:
            yield Label(path.name, hint, 100.0, "name")
            continue
        crop = read_crop(path)
        if crop.shape[1] < MIN_ASPECT * crop.shape[0]:
            continue
        _, characters = reader.read_registration(crop)
        choice = read_plate(characters, "eu", templates, topn=10)
        if choice is None:
            continue
        if choice.matches_template and choice.confidence >= MIN_CONFIDENCE:
            yield Label(path.name, choice.plate, choice.confidence, "reader")


def write_labels(labels: list[Label], target: Path) -> None:
    lines = ["file\ttext\tconfidence\tsource"]
    lines += [f"{label.file}\t{label.text}\t{label.confidence:.1f}\t{label.source}" for label in labels]
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("\n".join(lines) + "\n")
