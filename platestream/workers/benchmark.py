"""Accuracy and speed benchmarks of an engine (`platestream bench accuracy|speed`).

Accuracy reads a folder in the OpenALPR benchmark format: per image a `NAME.txt` holding
`IMAGE<TAB>X<TAB>Y<TAB>WIDTH<TAB>HEIGHT<TAB>PLATE`. Subfolders are scored separately. A plate is
detected when a reported box overlaps the annotated one with IoU > 0.4; texts are compared
upper-cased with everything but A-Z and 0-9 removed.
"""

from __future__ import annotations

import difflib
import re
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from platestream.errors import PlatestreamError
from platestream.workers.engine import Engine, Options, PlateRead, decode_image
from platestream.workers.engine.templates import TEMPLATES

IOU_THRESHOLD = 0.4


@dataclass(frozen=True)
class Annotation:
    image: Path
    box: tuple[int, int, int, int]  # x, y, width, height
    plate: str


@dataclass(frozen=True)
class FolderScore:
    folder: str
    n: int
    detection_rate: float
    top1: float
    topn: float
    median_ms: float
    p95_ms: float
    misreads: tuple[tuple[str, str], ...]  # (truth, what was read) for the first few misses
    # every misread plate's character confusions (`confusions`), commonest first: ("8>B", 2)
    confusions: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True)
class Miss:
    """One annotated plate not read right: where it is, what it says, what the engine made of it."""

    image: Path
    box: tuple[int, int, int, int]  # the annotation: x, y, width, height
    truth: str
    read: str | None  # the overlapping read's plate; None: no read overlaps the annotation
    candidates: tuple[str, ...]  # of the overlapping read
    found: tuple[tuple[str, tuple[float, float, float, float]], ...]  # every read of the image: plate, box


def normalize(text: str) -> str:
    return re.sub(r"[^A-Z0-9]", "", text.upper())


def iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """Intersection over union of two (x, y, width, height) boxes."""
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def plate_box(read: PlateRead) -> tuple[float, float, float, float]:
    xs = [p.x for p in read.coordinates]
    ys = [p.y for p in read.coordinates]
    return (min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys))


def read_annotations(folder: Path) -> list[Annotation]:
    found = []
    for text_file in sorted(folder.glob("*.txt")):
        fields = text_file.read_text().strip().split("\t")
        if len(fields) < 6:
            raise PlatestreamError(f"{text_file}: expected 6 tab-separated fields, found {len(fields)}")
        name, x, y, width, height, plate = fields[:6]
        found.append(Annotation(folder / name, (int(x), int(y), int(width), int(height)), normalize(plate)))
    return found


def benchmark_folders(root: Path) -> Iterator[Path]:
    """`root` itself when it holds annotations, else each subfolder that does."""
    if any(root.glob("*.txt")):
        yield root
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        if any(sub.glob("*.txt")):
            yield sub


def confusions(pairs: Iterable[tuple[str, str]]) -> Counter[str]:
    """The character confusions of misread plates, each a (truth, read) pair of normalised texts,
    aligned by their longest common runs: "8>B" an 8 read as B, "8>" an 8 left out, ">8" an 8
    read where the plate has none. A run replaced by one of another length pairs its characters
    from the left, the rest left out or added."""
    counts: Counter[str] = Counter()
    for truth, read in pairs:
        matcher = difflib.SequenceMatcher(None, truth, read, autojunk=False)
        for tag, i1, i2, j1, j2 in matcher.get_opcodes():
            if tag == "equal":
                continue
            was, became = truth[i1:i2], read[j1:j2]
            shared = min(len(was), len(became))
            counts.update(f"{a}>{b}" for a, b in zip(was[:shared], became[:shared], strict=True))
            counts.update(f"{a}>" for a in was[shared:])
            counts.update(f">{b}" for b in became[shared:])
    return counts


def score_folder(
    engine: Engine,
    folder: Path,
    options: Options,
    *,
    progress: Callable[[int, int], None] | None = None,
    on_miss: Callable[[Miss], None] | None = None,
) -> FolderScore:
    """Detection, top-1 and top-N over a folder's annotated images; `on_miss` hears of every
    plate not read right (with `progress`, after each image)."""
    items = read_annotations(folder)
    detected = top1 = topn = 0
    times: list[float] = []
    misreads: list[tuple[str, str]] = []
    misread_pairs: list[tuple[str, str]] = []  # every plate found but misread: (truth, read)
    for index, item in enumerate(items):
        image = decode_image(item.image.read_bytes(), name=str(item.image))
        started = time.perf_counter()
        (result,) = engine.recognize([image], options)
        times.append((time.perf_counter() - started) * 1000)
        overlapping = [read for read in result.plates if iou(plate_box(read), item.box) > IOU_THRESHOLD]
        read = overlapping[0] if overlapping else None
        if read is not None:
            detected += 1
            top1 += normalize(read.plate) == item.plate
            topn += any(normalize(c.plate) == item.plate for c in read.candidates)
        if read is None or normalize(read.plate) != item.plate:
            if read is not None:
                misread_pairs.append((item.plate, normalize(read.plate)))
            if len(misreads) < 20:
                shown = read.plate if read else "(not found: " + ",".join(r.plate for r in result.plates) + ")"
                misreads.append((item.plate, shown))
            if on_miss is not None:
                found = tuple((r.plate, plate_box(r)) for r in result.plates)
                candidates = tuple(c.plate for c in read.candidates) if read else ()
                on_miss(Miss(item.image, item.box, item.plate, read.plate if read else None, candidates, found))
        if progress:
            progress(index + 1, len(items))
    n = len(items)
    return FolderScore(
        folder=folder.name,
        n=n,
        detection_rate=detected / n if n else 0.0,
        top1=top1 / n if n else 0.0,
        topn=topn / n if n else 0.0,
        median_ms=statistics.median(times) if times else 0.0,
        p95_ms=float(np.percentile(times, 95)) if times else 0.0,
        misreads=tuple(misreads),
        confusions=tuple(sorted(confusions(misread_pairs).items(), key=lambda item: (-item[1], item[0]))),
    )


def country_of(folder: Path, default: str) -> str:
    return folder.name if folder.name in TEMPLATES else default


def as_dict(score: FolderScore) -> dict[str, object]:
    return asdict(score)


@dataclass(frozen=True)
class SpeedScore:
    resolution: str
    images: int
    seconds: float
    images_per_second: float
    ms_per_image: float


def speed(engine: Engine, image: np.ndarray, resolution: str, *, repeats: int,
          options: Options = Options()) -> SpeedScore:  # fmt: skip
    engine.recognize([image], options)  # warm-up
    started = time.perf_counter()
    for _ in range(repeats):
        engine.recognize([image], options)
    seconds = time.perf_counter() - started
    return SpeedScore(resolution, repeats, seconds, repeats / seconds, seconds * 1000 / repeats)
