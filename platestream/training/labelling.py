"""Labels for the unlabelled European crops. The `eu2_crop_*` files are named after their plates
(mostly square, two-line plates): the name is the label. The others are read with the blue EU strip
cut off (its country letters, D or GR, were read as the registration's first characters), in two
views (cut; cut with a margin of the plate's colour in the strip's place) and by two readers (PP-OCR;
PP-OCR with the engine's plate head). A reading is kept only where the crop is a one-line plate, all
four readings agree, an EU form fits it and PP-OCR is sure of it (one reader alone took stickers and
coats of arms for characters: HHOK7431 for HH-K 7431). What is kept is written to `labels/eu.tsv`
and committed, so the training data stays the same from run to run and can be looked at."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from platestream.training.crops import eu_candidates, name_hint, read_crop
from platestream.training.render import Image

MIN_CONFIDENCE = 90.0  # the reader's mean per-character confidence, 0-100
# The reader reads one text line: a square or two-line plate would be labelled with half its text.
MIN_ASPECT = 2.8
# The EU strip: a band of blue (OpenCV hue 95-135, saturated) at the plate's left edge, 4-14 % of
# its width (a tenth on a one-line plate), with no blue right of it (a light-blue plate is no strip).
STRIP_HUE = (95, 135)
STRIP_WIDTH = (0.04, 0.14)
STRIP_START = 0.06  # the band starts this near the left edge (the crop's margin, the plate's frame)
BLUE_COLUMN = 0.35  # a column of the strip is at least this blue


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
    from platestream.workers.engine.plate_head import HEAD_FILE, HEAD_SHA256
    from platestream.workers.engine.templates import regions_for

    readers = [TextReader(threads=1, providers=["CPUExecutionProvider"], head=head)
               for head in (None, (HEAD_FILE, HEAD_SHA256))]  # fmt: skip
    templates = regions_for("eu")
    for path in eu_candidates(root):
        hint = name_hint(path)
        if hint:
            yield Label(path.name, hint, 100.0, "name")
            continue
        crop = read_crop(path)
        if crop.shape[1] < MIN_ASPECT * crop.shape[0]:
            continue
        views = [cut_strip(crop), without_strip(crop)]
        choices = [read_plate(reader.read_registration(view)[1], "eu", templates, topn=10)
                   for view in views for reader in readers]  # fmt: skip
        ppocr = choices[0]
        if ppocr is None or any(choice is None or choice.plate != ppocr.plate for choice in choices):
            continue
        if ppocr.matches_template and ppocr.confidence >= MIN_CONFIDENCE:
            yield Label(path.name, ppocr.plate, ppocr.confidence, "reader")


def cut_strip(crop: Image) -> Image:
    """The crop without its EU strip (if any)."""
    return crop[:, eu_strip_width(crop) :]


def without_strip(crop: Image) -> Image:
    """The crop with its EU strip (if any) cut off, and as wide a margin of the plate's own colour
    put in its place: cut off alone, a thin first character (the I of IB 1004 DT) lay at the crop's
    edge and was lost; painted over, the strip's edge was read as an I or a T."""
    band = eu_strip_width(crop)
    if not band:
        return crop
    plate = crop[:, band:]
    colour = np.median(plate[:, : max(2, crop.shape[1] // 10)].reshape(-1, 3), axis=0).astype(np.uint8)
    margin = np.broadcast_to(colour, (crop.shape[0], max(2, band // 2), 3))
    return np.ascontiguousarray(np.hstack([margin, plate]))


def eu_strip_width(crop: Image) -> int:
    """The width in pixels of the blue EU strip at a plate crop's left edge, 0 where there is none."""
    hsv = cv2.cvtColor(crop, cv2.COLOR_BGR2HSV)
    hue, saturation, value = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    blue = ((hue >= STRIP_HUE[0]) & (hue <= STRIP_HUE[1]) & (saturation >= 70) & (value >= 40)).mean(0)
    width = crop.shape[1]
    columns = np.flatnonzero(blue >= BLUE_COLUMN)
    if not len(columns) or columns[0] > STRIP_START * width:
        return 0
    end = int(columns[0])
    for column in columns[1:]:  # the band: blue columns from its start, gaps of two at most
        if column - end > 3:
            break
        end = int(column)
    band = end + 1
    after = blue[band : band + max(2, int(0.1 * width))]
    if not STRIP_WIDTH[0] * width <= band <= STRIP_WIDTH[1] * width or after.mean() > 0.15:
        return 0
    return band


def write_labels(labels: list[Label], target: Path) -> None:
    lines = ["file\ttext\tconfidence\tsource"]
    lines += [f"{label.file}\t{label.text}\t{label.confidence:.1f}\t{label.source}" for label in labels]
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("\n".join(lines) + "\n")
