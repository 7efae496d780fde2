"""Real plate crops for training: the labelled US and Brazilian crops, the European crops with the
labels the project gave them (`labels/eu.tsv`), split by plate text so that no plate of the
held-out part is ever trained on, and seen the way the detector would hand them over.
"""

from __future__ import annotations

import csv
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from platestream.training.render import Image, Rng, degrade

LABELS_DIR = Path(__file__).parent / "labels"
REGION_FOLDERS = {"us": "us", "br": "br", "eu": "eu-unlabelled"}
VALID_TEXT = re.compile(r"[A-Z0-9]{2,10}\Z")
HELD_OUT_SHARE = 10  # percent of plate texts kept for validation


@dataclass(frozen=True)
class Crop:
    path: Path
    text: str
    region: str

    @property
    def held_out(self) -> bool:
        """A stable tenth of the plate texts (every crop of one plate on the same side)."""
        digest = hashlib.sha256(self.text.encode()).digest()
        return int.from_bytes(digest[:4], "big") % 100 < HELD_OUT_SHARE


def label_file(region: str, root: Path) -> Path:
    """Where a region's labels are: the data set's own, or for Europe the project's."""
    if region == "eu":
        return LABELS_DIR / "eu.tsv"
    return root / REGION_FOLDERS[region] / "labels.tsv"


def load_crops(root: Path, regions: tuple[str, ...] = ("us", "eu", "br")) -> list[Crop]:
    """The labelled crops under `root` (the plate-crops data set), in file order."""
    crops = []
    for region in regions:
        folder = root / REGION_FOLDERS[region]
        labels = label_file(region, root)
        if not labels.exists():
            continue
        for row in csv.reader(labels.read_text().splitlines(), delimiter="\t"):
            if len(row) < 2 or row[0] == "file":
                continue
            text = row[1].strip().upper()
            path = folder / row[0]
            if not path.exists():  # a packed copy (pack() re-encodes every crop as JPEG)
                path = path.with_suffix(".jpg")
            if VALID_TEXT.match(text) and path.exists():
                crops.append(Crop(path, text, region))
    return crops


def read_crop(path: Path) -> Image:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"{path} is not an image")
    return np.asarray(image, dtype=np.uint8)


def detector_view(crop: Image, rng: Rng) -> Image:
    """A tight real crop as the detector would box it: some surroundings (the crop's own edge
    pixels stretched), a small rotation and perspective, and a camera's faults."""
    height, width = crop.shape[:2]
    pad_x = [int(width * rng.uniform(0.0, 0.2)) for _ in range(2)]
    pad_y = [int(height * rng.uniform(0.05, 0.45)) for _ in range(2)]
    border = cv2.BORDER_REPLICATE if rng.random() < 0.6 else cv2.BORDER_REFLECT
    image = cv2.copyMakeBorder(crop, pad_y[0], pad_y[1], pad_x[0], pad_x[1], border)
    h, w = image.shape[:2]
    corners = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)
    moved = (corners + rng.normal(0, 0.025, (4, 2)) * (w, h)).astype(np.float32)
    matrix = cv2.getPerspectiveTransform(corners, moved)
    image = cv2.warpPerspective(image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return degrade(np.asarray(image, dtype=np.uint8), rng, strength=0.7)


def eu_candidates(root: Path) -> Iterator[Path]:
    folder = root / REGION_FOLDERS["eu"]
    yield from sorted(p for p in folder.iterdir() if p.suffix.lower() in {".jpg", ".png", ".jpeg"})


def name_hint(path: Path) -> str:
    """The plate the file name carries, where it carries one (`eu2_crop_d_hhnr367` -> HHNR367)."""
    stem = path.stem.lower().removesuffix("_close")
    if not stem.startswith("eu2_crop_"):
        return ""
    last = stem.split("_")[-1]
    return last.upper() if re.fullmatch(r"[a-z0-9]{4,10}", last) and any(c.isdigit() for c in last) else ""


def pack(root: Path, out: Path, *, max_width: int = 256, quality: int = 92) -> int:
    """A small copy of the data set for a machine that does not have it: the labelled crops and
    the blank US plates, re-encoded as JPEG at most `max_width` wide, with their labels.
    Returns the number of crops packed."""
    crops = load_crops(root)
    for region, folder in REGION_FOLDERS.items():
        (out / folder).mkdir(parents=True, exist_ok=True)
        rows = [f"{c.path.stem}.jpg\t{c.text}" for c in crops if c.region == region]
        if region != "eu":  # EU labels ship with the package
            (out / folder / "labels.tsv").write_text("file\ttext\n" + "\n".join(rows) + "\n")
    blanks = root / "us-blank-plates"
    sources = [(c.path, out / REGION_FOLDERS[c.region] / f"{c.path.stem}.jpg") for c in crops]
    if blanks.exists():
        (out / "us-blank-plates").mkdir(parents=True, exist_ok=True)
        sources += [(p, out / "us-blank-plates" / f"{p.stem}.jpg") for p in sorted(blanks.iterdir())]
    for source, target in sources:
        image = read_crop(source)
        if image.shape[1] > max_width:
            size = (max_width, max(1, round(image.shape[0] * max_width / image.shape[1])))
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(target), image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return len(crops)
