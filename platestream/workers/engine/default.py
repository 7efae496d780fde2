"""The default engine: a YOLOv8 plate detector and a plate reader, all ONNX on ONNX Runtime.

Per image: find plates (detector); per plate, PP-OCR finds the plate's text lines, keeps the line(s)
of the tallest characters (the registration, not the state name, slogan or dealer frame), rectifies
and reads them; the per-character probabilities become top-N candidates chosen by region template.

Readers (`reader`): `ppocr-head` (the default) reads the line with PP-OCR's network and the
project's plate head (`plate_head.py`) mixed with PP-OCR's own last layer, and US plates with a
head of their own that tunes PP-OCR's whole reader (`REGION_HEADS`); `ppocr` with PP-OCR's reader
alone;
`platestream` reads the detector's box, widened a little, with the project's own
whole-plate reader (`reader.py`: character slots and the registration's box, one model) instead.

The detector looks at a frame at its size (320 on the longer side); a frame where that reads no
plate from a sure box is looked at again at SECOND_LOOK_SIZE, where far plates are larger.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from platestream.workers.engine import models
from platestream.workers.engine.base import (
    Box,
    Engine,
    Image,
    ImageResult,
    Options,
    PlateRead,
    Point,
    per_image_options,
)
from platestream.workers.engine.candidates import Alternatives, Choice, read_plate
from platestream.workers.engine.images import encode_jpeg
from platestream.workers.engine.plate_head import (
    HEAD_FILE,
    HEAD_SHA256,
    REGION_HEADS,
    HeadModelError,
    JoinedReader,
    dictionary,
    join,
    mix_distributions,
    separator_columns,
)
from platestream.workers.engine.reader import MODEL_FILE, MODEL_SHA256, PAD_X, PAD_Y, PlateReader, rectangle_crop
from platestream.workers.engine.templates import regions_for

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
# A detection at least this confident is a plate whatever it reads; a weaker one (down to
# WEAK_DETECTION: small, far or dim plates) only when its reading fits a region's pattern.
SURE_DETECTION = 0.25
WEAK_DETECTION = 0.01
MAX_WEAK_READS = 1  # per image: weak detections cost at most one plate read (about 30 ms)
# A frame where the detector at its size found no plate surely is looked at again at this size (a
# far plate in a 1280x720 frame is a few pixels tall at 320). 0: no second look.
SECOND_LOOK_SIZE = 960
SAME_PLATE_OVERLAP = 0.5  # share of the smaller box inside the other: the same plate boxed twice
MIN_LINE_WIDTH = 160  # pixels at the reader's height of 48: 20 time steps
EMPTY_SLOT = 0.02  # a reader's slot whose characters share less probability than this holds none
READERS = ("ppocr-head", "ppocr", "platestream")
PLATE_LIKE = re.compile(r"(?=.*[0-9])[A-Z0-9]{5,8}\Z")
# A two-line plate's lines: the shorter line's characters at least this share of the taller's
# height, their middles at most this many line heights apart. A plate's other print is mostly
# shorter; where it is as tall (a state's name in capitals, a dealer's frame), the registration's
# own line fits a form and is read alone.
STACKED_HEIGHT = 0.7
STACKED_DISTANCE = 1.6
FloatArray = NDArray[np.float32]


@dataclass(frozen=True)
class Detection:
    x1: float
    y1: float
    x2: float
    y2: float
    confidence: float


Reads = list[tuple[Detection, PlateRead]]  # an image's plates, each with the detection it was read from


class PlateDetector:
    """YOLOv8 plate boxes. An image is scaled so its longer side is `size` and padded to multiples
    of 32 (no square padding wasted on a 16:9 frame); images of one shape run as one batch."""

    def __init__(self, files: models.DetectorFiles, *, size: int, threads: int, providers: Sequence[str],
                 min_confidence: float) -> None:  # fmt: skip
        self.session = models.onnx_session(str(files.onnx), threads, providers)
        self.size = size
        self.min_confidence = min_confidence
        self.reg_max = files.reg_max
        self.strides = files.strides
        self._grids: dict[tuple[int, int], tuple[FloatArray, FloatArray]] = {}

    def detect(self, images: Sequence[Image], *, size: int | None = None) -> list[list[Detection]]:
        """Each image's plates, most confident first; `size` (default: the detector's) is the longer
        side the images are scaled to."""
        size = size or self.size
        found: list[list[Detection]] = [[] for _ in images]
        shapes: dict[tuple[int, int], list[int]] = {}
        for index, image in enumerate(images):
            shapes.setdefault(_letterbox_shape(image.shape, size), []).append(index)
        for shape, indices in shapes.items():
            batch = np.empty((len(indices), 3, *shape), dtype=np.float32)
            ratios = []
            for row, index in enumerate(indices):
                canvas, ratio = _letterbox(images[index], shape, size)
                batch[row] = canvas[:, :, ::-1].transpose(2, 0, 1) / np.float32(255.0)
                ratios.append(ratio)
            (raw,) = self.session.run(None, {"images": batch})
            for row, index in enumerate(indices):
                found[index] = self._decode(raw[row], ratios[row], shape, images[index].shape)
        return found

    def _grid(self, shape: tuple[int, int]) -> tuple[FloatArray, FloatArray]:
        """Anchor centres and strides of every output cell, for one input shape."""
        if shape not in self._grids:
            anchors, strides = [], []
            for stride in self.strides:
                ys, xs = np.mgrid[0 : shape[0] // stride, 0 : shape[1] // stride]
                anchors.append(np.stack([xs.ravel() + 0.5, ys.ravel() + 0.5], 1))
                strides.append(np.full(xs.size, stride))
            self._grids[shape] = (np.concatenate(anchors).astype(np.float32),
                                  np.concatenate(strides).astype(np.float32))  # fmt: skip
        return self._grids[shape]

    def _decode(
        self, raw: FloatArray, ratio: float, input_shape: tuple[int, int], shape: tuple[int, ...]
    ) -> list[Detection]:
        scores = 1.0 / (1.0 + np.exp(-np.clip(raw[4 * self.reg_max], -50, 50)))
        keep = scores > self.min_confidence
        if not keep.any():
            return []
        bins = raw[: 4 * self.reg_max, keep].reshape(4, self.reg_max, -1)
        bins = np.exp(bins - bins.max(1, keepdims=True))
        distances = (bins / bins.sum(1, keepdims=True) * np.arange(self.reg_max)[None, :, None]).sum(1)
        all_anchors, all_strides = self._grid(input_shape)
        anchors, strides, scores = all_anchors[keep], all_strides[keep], scores[keep]
        x1 = (anchors[:, 0] - distances[0]) * strides / ratio
        y1 = (anchors[:, 1] - distances[1]) * strides / ratio
        x2 = (anchors[:, 0] + distances[2]) * strides / ratio
        y2 = (anchors[:, 1] + distances[3]) * strides / ratio
        rects = [[float(a), float(b), float(c - a), float(d - b)] for a, b, c, d in zip(x1, y1, x2, y2, strict=True)]
        chosen = np.asarray(cv2.dnn.NMSBoxes(rects, scores.tolist(), self.min_confidence, 0.45)).ravel()
        height, width = shape[:2]
        found = [
            Detection(max(0.0, float(x1[i])), max(0.0, float(y1[i])), min(float(width), float(x2[i])),
                      min(float(height), float(y2[i])), float(scores[i]))
            for i in chosen
        ]  # fmt: skip
        return sorted((d for d in found if d.x2 - d.x1 >= 4 and d.y2 - d.y1 >= 4), key=lambda d: -d.confidence)


def _letterbox_shape(shape: tuple[int, ...], size: int) -> tuple[int, int]:
    """The detector's input (height, width) for an image: longer side `size`, both sides rounded
    up to a multiple of 32 (the detector's largest stride)."""
    height, width = shape[:2]
    ratio = size / max(height, width)
    return (-(-max(1, round(height * ratio)) // 32) * 32, -(-max(1, round(width * ratio)) // 32) * 32)


def _letterbox(image: Image, shape: tuple[int, int], size: int) -> tuple[Image, float]:
    height, width = image.shape[:2]
    ratio = size / max(height, width)
    new_w, new_h = min(shape[1], max(1, round(width * ratio))), min(shape[0], max(1, round(height * ratio)))
    canvas = np.full((*shape, 3), 114, dtype=np.uint8)
    interpolation = cv2.INTER_AREA if ratio < 1 else cv2.INTER_LINEAR
    canvas[:new_h, :new_w] = cv2.resize(image, (new_w, new_h), interpolation=interpolation)
    return canvas, ratio


class TextReader:
    """PP-OCR text lines inside a plate crop, and their characters' probabilities."""

    def __init__(self, *, threads: int, providers: Sequence[str], line_width: int = 224,
                 head: tuple[Path, str] | None = None, line_finder: TextReader | None = None) -> None:  # fmt: skip
        """`head`: the plate head's file and SHA-256, joined to PP-OCR's reader (None: PP-OCR alone).
        `line_finder`: another reader whose text-line detector this one shares (a reader per region)."""
        from rapidocr.ch_ppocr_det.utils import DBPostProcess

        self.detector: Any = line_finder.detector if line_finder is not None else models.onnx_session(
            models.flushed_model(models.ocr_model(models.OCR_DETECTOR)), threads, providers)  # fmt: skip
        reader_file = models.ocr_model(models.OCR_READER)
        self.head: JoinedReader | None = join(reader_file, *head) if head else None
        if self.head is not None and self.head.alphabet != ALPHABET:
            raise HeadModelError(f"the plate head reads {self.head.alphabet!r}, the engine expects {ALPHABET!r}")
        model = self.head.model if self.head else models.flushed_model(reader_file)
        self.reader = models.onnx_session(model, threads, providers)
        self.postprocess = DBPostProcess(
            thresh=0.3, box_thresh=0.5, max_candidates=50, unclip_ratio=1.6, use_dilation=True, score_mode="fast"
        )
        self.line_width = line_width
        if self.head is not None:
            characters = list(self.head.characters)
        else:
            meta = self.reader.get_modelmeta().custom_metadata_map
            characters = dictionary(meta["character"])
        index = {char: i for i, char in enumerate(characters)}
        self.upper = np.array([index[c] for c in ALPHABET])
        self.lower = np.array([index.get(c.lower(), 0) for c in ALPHABET])
        self.has_lower = np.array([c.isalpha() for c in ALPHABET])
        self.separators = np.array(separator_columns(characters), dtype=np.intp)

    def text_boxes(self, crop: Image) -> list[NDArray[np.float32]]:
        """The text-line detector's boxes in a plate crop (4x2 corners each, in the crop's pixels)."""
        scale = self.line_width / crop.shape[1]
        height = max(32, round(crop.shape[0] * scale / 32) * 32)
        resized = cv2.resize(crop, (self.line_width, height), interpolation=cv2.INTER_LINEAR)
        tensor = ((resized.astype(np.float32) / 255.0 - 0.5) / 0.5).transpose(2, 0, 1)[None]
        (probability,) = self.detector.run(None, {"x": tensor})
        boxes, _ = self.postprocess(probability, crop.shape[:2])
        return [np.asarray(box, dtype=np.float32) for box in boxes]

    def read_registration(self, crop: Image) -> tuple[NDArray[np.float32], list[Alternatives]]:
        """The corners of a plate crop's registration (the whole crop where no line was found) and
        its characters' alternatives, the line rectified and a little widened: a reader tends to
        lose a first or last character at the edge."""
        corners, line = self.registration_line(crop)
        return corners, self.read(line)

    def registration_rows(self, crop: Image) -> tuple[NDArray[np.float32], NDArray[np.float32] | None]:
        """The registration's corners in a plate crop (the whole crop where no line was found) and,
        where a second line of characters as tall lies directly above or below it (`stacked_row`:
        the other line of a two-line plate, or a state's name as tall), that line's corners."""
        boxes = self.text_boxes(crop)
        if not boxes:
            height, width = crop.shape[:2]
            return np.array([[0, 0], [width, 0], [width, height], [0, height]], dtype=np.float32), None
        rows = text_rows(boxes)
        main = _nearest_middle(rows, crop.shape[0])
        other = stacked_row(rows, main)
        return _row_corners(rows[main].boxes), None if other is None else _row_corners(rows[other].boxes)

    def read_line(self, crop: Image, corners: NDArray[np.float32]) -> list[Alternatives]:
        """The alternatives of the line at `corners` in a plate crop (`line_image`)."""
        return self.read(line_image(crop, corners))

    def registration_line(self, crop: Image) -> tuple[NDArray[np.float32], Image]:
        """The registration's corners in a plate crop (the whole crop where no line was found) and
        its line, rectified and widened a little."""
        corners, _ = self.registration_rows(crop)
        return corners, line_image(crop, corners)

    def tensor(self, line: Image) -> FloatArray:
        """A line as the PP-OCR reader's input."""
        return reader_tensor(self.resized(line))

    @staticmethod
    def resized(line: Image) -> Image:
        """A line resized as the PP-OCR reader reads it: 48 px tall, 160-640 px wide."""
        # A plate's line is short and its characters dense: stretched to at least MIN_LINE_WIDTH,
        # the reader has enough time steps to separate them (and a blank between doubled ones).
        width = max(MIN_LINE_WIDTH, min(640, round(48 * line.shape[1] / max(1, line.shape[0]))))
        # Bilinear, as PP-OCR's own pipeline resizes the lines it was trained on: a far plate's
        # line, 12-40 px tall, is magnified 2-4 times here, and bicubic read look-alikes worse
        # (dev us 84.1 -> 86.9 % top-1; BENCHMARKS.md, "The reader's resize").
        return cv2.resize(line, (width, 48), interpolation=cv2.INTER_LINEAR)

    def plate_characters(self, steps: FloatArray) -> FloatArray:
        """PP-OCR's probabilities per step narrowed to blank + ALPHABET (lower case as upper). A
        step PP-OCR reads as a separator (a space, a hyphen, a dot: how it reads the gap, emblem
        or state mark between a plate's groups) holds no plate character: its share is the
        blank's, not left out, so that the character it would otherwise become after the
        narrowing (Texas' silhouette as an L in SH0LR7X) does not appear."""
        letters = steps[:, self.upper] + steps[:, self.lower] * self.has_lower
        blank = steps[:, :1] + steps[:, self.separators].sum(1, keepdims=True)
        return np.asarray(np.concatenate([blank, letters], axis=1), np.float32)

    def read(self, line: Image) -> list[Alternatives]:
        """For each character position, its likeliest characters with probabilities."""
        outputs = self.reader.run(None, {"x": self.tensor(line)})
        if self.head is None:
            probabilities = self.plate_characters(outputs[0][0])
        elif self.head.ppocr_output is None:  # PP-OCR's share is 0: the head alone
            probabilities = outputs[0][0]
        else:
            probabilities = mix_distributions(outputs[1][0], self.plate_characters(outputs[0][0]), self.head.mix,
                                              self.head.mixing)  # fmt: skip
        return ctc_alternatives(np.asarray(probabilities, dtype=np.float32))


@dataclass(frozen=True)
class TextRow:
    """Text boxes side by side (characters split at a gap): one line of a plate."""

    top: float
    bottom: float
    boxes: list[NDArray[np.float32]]

    @property
    def height(self) -> float:
        return float(np.mean([_box_height(box) for box in self.boxes]))

    @property
    def span(self) -> tuple[float, float]:
        return (min(float(box[:, 0].min()) for box in self.boxes), max(float(box[:, 0].max()) for box in self.boxes))


def _box_height(box: NDArray[np.float32]) -> float:
    return float(np.linalg.norm(box[3] - box[0]) + np.linalg.norm(box[2] - box[1])) / 2


def text_rows(boxes: Sequence[NDArray[np.float32]]) -> list[TextRow]:
    """The rows the text boxes (4x2 corners each) make, top first, of the boxes at least 0.6 as tall
    as the tallest (smaller print is left out). Boxes side by side (characters split at a gap) form
    one row; a line above or below, however tall, forms its own."""
    heights = [_box_height(box) for box in boxes]
    tallest = max(heights)
    rows: list[TextRow] = []
    for box, _ in sorted(((b, h) for b, h in zip(boxes, heights, strict=True) if h >= 0.6 * tallest),
                         key=lambda pair: float(pair[0][:, 1].mean())):  # fmt: skip
        top, bottom = float(box[:, 1].min()), float(box[:, 1].max())
        for index, row in enumerate(rows):
            shared = min(bottom, row.bottom) - max(top, row.top)
            if shared >= 0.5 * min(bottom - top, row.bottom - row.top):
                rows[index] = TextRow(min(top, row.top), max(bottom, row.bottom), [*row.boxes, box])
                break
        else:
            rows.append(TextRow(top, bottom, [box]))
    return rows


def _nearest_middle(rows: Sequence[TextRow], crop_height: int) -> int:
    middle = crop_height / 2
    return min(range(len(rows)), key=lambda index: abs((rows[index].top + rows[index].bottom) / 2 - middle))


def main_row(boxes: Sequence[NDArray[np.float32]], crop_height: int) -> list[NDArray[np.float32]]:
    """The text boxes (4x2 corners each) of the registration: of the rows with the tallest
    characters (`text_rows`), the one nearest the crop's middle, not a frame's dealer name or a
    state's script above or below it, however tall."""
    rows = text_rows(boxes)
    return rows[_nearest_middle(rows, crop_height)].boxes


def stacked_row(rows: Sequence[TextRow], main: int) -> int | None:
    """The row (an index into `rows`, top first) that makes a two-line plate with row `main`: the
    row just above or below it, its characters about as tall (STACKED_HEIGHT), under or over it for
    at least half the narrower row's width, its middle no further than STACKED_DISTANCE line heights
    away. None for a plate of one line: the rows a plate's state name, slogan or frame make are
    shorter, or not there."""
    row = rows[main]
    found = []
    for index in (main - 1, main + 1):
        if not 0 <= index < len(rows):
            continue
        other = rows[index]
        low, high = sorted((row.height, other.height))
        (a1, a2), (b1, b2) = row.span, other.span
        shared = min(a2, b2) - max(a1, b1)
        distance = abs((other.top + other.bottom) - (row.top + row.bottom)) / 2
        if (low >= STACKED_HEIGHT * high and shared >= 0.5 * min(a2 - a1, b2 - b1)
                and distance <= STACKED_DISTANCE * (low + high) / 2):  # fmt: skip
            found.append(index)
    # a row stacked on both sides: the taller neighbour
    return max(found, key=lambda index: rows[index].height) if found else None


def _row_corners(boxes: Sequence[NDArray[np.float32]]) -> NDArray[np.float32]:
    """One box's corners, or the rotated rectangle around several (clockwise from top-left)."""
    if len(boxes) == 1:
        return boxes[0]
    rect = cv2.minAreaRect(np.concatenate(list(boxes)))
    return _order_corners(cv2.boxPoints(rect).astype(np.float32))


def ctc_alternatives(probabilities: FloatArray, *, top: int = 3) -> list[Alternatives]:
    """Greedy CTC segments (blank at column 0) and, per segment, its `top` characters with the
    highest probability reached anywhere in the segment."""
    best = probabilities.argmax(1)
    positions: list[Alternatives] = []
    start = None
    for step in range(len(best) + 1):
        current = best[step] if step < len(best) else 0
        previous = best[step - 1] if step > 0 else 0
        if start is not None and current != previous:
            peak = probabilities[start:step, 1:].max(0)
            order = np.argsort(-peak)[:top]
            positions.append([(ALPHABET[i], float(peak[i])) for i in order])
            start = None
        if current not in (0, previous):
            start = step
    return positions


def reader_tensor(lines: Image) -> FloatArray:
    """Lines resized for PP-OCR's reader (48 px tall; one line, or a batch of one width) as its
    input: channels first, scaled to -1..1."""
    batch = lines if lines.ndim == 4 else lines[None]
    return np.asarray(((batch.astype(np.float32) / 255.0 - 0.5) / 0.5).transpose(0, 3, 1, 2), np.float32)


def line_image(crop: Image, corners: NDArray[np.float32]) -> Image:
    """The line at `corners` in a plate crop, rectified and widened by 6 % each side: a reader
    tends to lose a first or last character at the edge."""
    return _rectify(crop, _widen(corners, 0.06))


def _order_corners(points: NDArray[np.float32]) -> NDArray[np.float32]:
    by_sum = points.sum(1)
    by_diff = np.diff(points, axis=1).ravel()
    return np.array(
        [points[by_sum.argmin()], points[by_diff.argmin()], points[by_sum.argmax()], points[by_diff.argmax()]],
        dtype=np.float32,
    )


def _widen(corners: NDArray[np.float32], along: float) -> NDArray[np.float32]:
    """Corners moved outwards along the box by a fraction of its width on each side."""
    dx = (corners[1] - corners[0]) * along
    return np.array([corners[0] - dx, corners[1] + dx, corners[2] + dx, corners[3] - dx], dtype=np.float32)


def _rectify(image: Image, corners: NDArray[np.float32]) -> Image:
    width = round(max(np.linalg.norm(corners[1] - corners[0]), np.linalg.norm(corners[2] - corners[3])))
    height = round(max(np.linalg.norm(corners[3] - corners[0]), np.linalg.norm(corners[2] - corners[1])))
    target = np.array([[0, 0], [width, 0], [width, height], [0, height]], dtype=np.float32)
    matrix = cv2.getPerspectiveTransform(corners, target)
    warped: Image = cv2.warpPerspective(
        image, matrix, (max(1, width), max(1, height)), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE
    )
    return warped


class DefaultEngine(Engine):
    name = "default"

    def __init__(self, *, detector_size: int = 320, threads: int = 1, gpu: bool = False,
                 reader: str = "ppocr-head", reader_model: Path | None = None,
                 reader_sha256: str | None = None, second_look: int = SECOND_LOOK_SIZE) -> None:  # fmt: skip
        """`reader_model` and `reader_sha256` run another trained model of the chosen reader (a new
        training's plate-reader.onnx or plate-head.onnx and the SHA-256 it printed) instead of the
        shipped one. `second_look`: the detector's size for a second look at frames where no plate
        was read from a sure detection at `detector_size` (0: none)."""
        if second_look and second_look <= detector_size:
            raise ValueError(f"the second look ({second_look}) must be larger than the detector's size "
                             f"({detector_size}), or 0 for none")  # fmt: skip
        self.second_look = second_look
        if reader not in READERS:
            raise ValueError(f"unknown reader {reader!r}; known: {', '.join(READERS)}")
        if reader == "ppocr" and (reader_model or reader_sha256):
            raise ValueError("reader 'ppocr' runs no model of the project's: a trained model needs reader "
                             "'ppocr-head' (plate-head.onnx) or 'platestream' (plate-reader.onnx)")  # fmt: skip
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if gpu else ["CPUExecutionProvider"]
        self.detector = PlateDetector(
            models.plate_detector(), size=detector_size, threads=threads, providers=providers,
            min_confidence=WEAK_DETECTION,
        )  # fmt: skip
        self.plate_reader = None
        if reader == "platestream":
            self.plate_reader = PlateReader(threads=threads, providers=providers, path=reader_model or MODEL_FILE,
                                            sha256=reader_sha256 or MODEL_SHA256)  # fmt: skip
        self.reader = None
        # a region's own reader (`REGION_HEADS`), where the shipped heads read: a trained head
        # given as `reader_model` reads every region
        self.region_readers: dict[str, TextReader] = {}
        if reader != "platestream":
            head = (reader_model or HEAD_FILE, reader_sha256 or HEAD_SHA256) if reader == "ppocr-head" else None
            self.reader = TextReader(threads=threads, providers=providers, head=head)
            if reader == "ppocr-head" and reader_model is None:
                self.region_readers = {
                    region: TextReader(threads=threads, providers=providers, head=own, line_finder=self.reader)
                    for region, own in REGION_HEADS.items()
                }

    def recognize(self, images: Sequence[Image], options: Options | Sequence[Options] = Options()) -> list[ImageResult]:
        started = time.perf_counter()
        per_image = per_image_options(options, len(images))
        detections = self.detector.detect(images)
        spent_ms = [(time.perf_counter() - started) * 1000 / max(1, len(images))] * len(images)
        reads: list[Reads] = []
        tried: list[list[Detection]] = []
        for index, (image, found, opts) in enumerate(zip(images, detections, per_image, strict=True)):
            read_started = time.perf_counter()
            image_reads, image_tried = self._read_plates(image, found, opts)
            reads.append(image_reads)
            tried.append(image_tried)
            spent_ms[index] += (time.perf_counter() - read_started) * 1000
        self._look_again(images, per_image, reads, tried, spent_ms)
        results = []
        for image, image_reads, ms in zip(images, reads, spent_ms, strict=True):
            height, width = image.shape[:2]
            results.append(
                ImageResult(
                    width=width,
                    height=height,
                    plates=tuple(plate for _, plate in image_reads),
                    processing_time_ms=round(ms, 3),
                    regions_of_interest=(Box(0, 0, width, height),),
                )
            )
        return results

    def _look_again(self, images: Sequence[Image], options: Sequence[Options],
                    reads: list[Reads], tried: list[list[Detection]],
                    spent_ms: list[float]) -> None:  # fmt: skip
        """Frames larger than the detector's size where the first look read no plate from a sure
        detection, looked at again at the second look's size (or their own, if smaller) and read
        again (`_read_again`). `reads`, `tried` and `spent_ms` are updated in place."""
        sizes: dict[int, list[int]] = {}
        for index, image in enumerate(images):
            size = min(self.second_look, max(image.shape[:2]))
            if size > self.detector.size and all(box.confidence < SURE_DETECTION for box, _ in reads[index]):
                sizes.setdefault(size, []).append(index)
        for size, indices in sizes.items():
            started = time.perf_counter()
            again = self.detector.detect([images[index] for index in indices], size=size)
            detect_ms = (time.perf_counter() - started) * 1000 / len(indices)
            for index, found in zip(indices, again, strict=True):
                read_started = time.perf_counter()
                reads[index] = self._read_again(images[index], found, options[index], reads[index], tried[index])
                spent_ms[index] += detect_ms + (time.perf_counter() - read_started) * 1000

    def _read_again(self, image: Image, found: Sequence[Detection], options: Options, reads: Reads,
                    tried: list[Detection]) -> Reads:  # fmt: skip
        """A frame's plates after its second look (`found`): a plate the first look read from a
        weak box is read again from a sure box lying on it (a box of half a plate gives way to one
        of the whole); the other new boxes are read, with a weak read of their own, except those
        on a sure box the first look read (`tried`, extended) or on a plate kept. A weak box that
        read nothing hides only the weak new boxes on it, not a sure one."""
        kept = []
        for box, plate in reads:  # all read from weak boxes
            sure = next((new for new in found if new.confidence >= SURE_DETECTION
                         and _overlap(new, box) > SAME_PLATE_OVERLAP), None)  # fmt: skip
            if sure is None:
                kept.append((box, plate))
                continue
            tried.append(sure)
            read_again = self._read_plate(image, sure, options, second_look=True)
            kept.append((box, plate) if read_again is None else (sure, read_again))
        fresh = [new for new in found if new.confidence >= SURE_DETECTION
                 or not any(_overlap(new, box) > SAME_PLATE_OVERLAP for box in tried)]  # fmt: skip
        skip = [box for box in tried if box.confidence >= SURE_DETECTION] + [box for box, _ in kept]
        more, _ = self._read_plates(image, fresh, options, skip=skip, second_look=True)
        return kept + more

    def _read_plates(self, image: Image, detections: Sequence[Detection], options: Options, *,
                     skip: Sequence[Detection] = (),
                     second_look: bool = False) -> tuple[Reads, list[Detection]]:  # fmt: skip
        """The plates of detections read from the most confident down, each with its detection,
        and the detections read. One lying mostly inside a box already read as a plate (or in
        `skip`) is the same plate boxed again and is not read (nor reported) twice. At most
        MAX_WEAK_READS weak ones are read; `second_look`: see `is_plate`."""
        reads: Reads = []
        taken: list[Detection] = list(skip)
        tried: list[Detection] = []
        weak_left = MAX_WEAK_READS
        for detection in detections:
            if any(_overlap(detection, other) > SAME_PLATE_OVERLAP for other in taken):
                continue
            if detection.confidence < SURE_DETECTION:
                if weak_left == 0:
                    break  # detections come most confident first: the rest are weaker still
                weak_left -= 1
            tried.append(detection)
            read = self._read_plate(image, detection, options, second_look=second_look)
            if read is not None:
                reads.append((detection, read))
                taken.append(detection)
        return reads, tried

    def _read_plate(self, image: Image, detection: Detection, options: Options, *,
                    second_look: bool = False) -> PlateRead | None:  # fmt: skip
        """The plate read from a detection, or None: see `is_plate`."""
        if self.reader is not None:
            return self._read_plate_ppocr(image, detection, options, second_look=second_look)
        assert self.plate_reader is not None  # one of the two readers is always there
        started = time.perf_counter()
        box = (detection.x1, detection.y1, detection.x2, detection.y2)
        crop, (left, top) = rectangle_crop(image, box)
        if crop.shape[0] < 4 or crop.shape[1] < 8:
            return None
        reading = self.plate_reader.read([crop])[0]
        slots = [alts for alts in reading.positions if sum(p for _, p in alts) >= EMPTY_SLOT]
        templates = regions_for(options.country, options.state, options.regions)
        choice = read_plate(slots, options.country, templates, topn=options.topn, strict=options.region_strict)
        if choice is None or not is_plate(choice, detection.confidence, second_look=second_look):
            return None
        # The reader's box of the characters, learnt on rendered plates, is narrower than the
        # characters on photographs; the detector's is the plate's border, wider than they are: the
        # mean of the two boxes them best (dev set, IoU > 0.4: 97.9 % of US plates against 77 / 91 %).
        x1, y1, x2, y2 = reading.box
        crop_h, crop_w = crop.shape[:2]
        read_box = np.array([x1 * crop_w + left, y1 * crop_h + top, x2 * crop_w + left, y2 * crop_h + top])
        mean = (read_box + np.array([detection.x1, detection.y1, detection.x2, detection.y2])) / 2
        characters = np.array([[mean[0], mean[1]], [mean[2], mean[1]], [mean[2], mean[3]], [mean[0], mean[3]]],
                              dtype=np.float32)  # fmt: skip
        corners = _plate_corners(characters, 0, 0, image.shape)
        return _plate_read(choice, corners, detection, crop, image.shape, options, started)

    def _read_plate_ppocr(self, image: Image, detection: Detection, options: Options, *,
                          second_look: bool) -> PlateRead | None:  # fmt: skip
        assert self.reader is not None
        started = time.perf_counter()
        crop, left, top = padded_crop(image, (detection.x1, detection.y1, detection.x2, detection.y2))
        if crop.shape[0] < 4 or crop.shape[1] < 8:
            return None
        corners, other_line = self.reader.registration_rows(crop)
        lines = self.region_readers.get(options.country.lower(), self.reader)
        characters = lines.read_line(crop, corners)
        templates = regions_for(options.country, options.state, options.regions)
        choice = read_plate(characters, options.country, templates, topn=options.topn,
                            strict=options.region_strict)  # fmt: skip
        if other_line is not None and (choice is None or not choice.matches_template):
            # A two-line plate, read top line first, where the registration's line alone fits no
            # form of the region and the two lines together do: a square EU plate's HGL over 8DG5
            # is HGL8DG5. A plate whose line fits a form is not read again (TEXAS above CYZ5139).
            others = lines.read_line(crop, other_line)
            above = float(other_line[:, 1].mean()) < float(corners[:, 1].mean())
            both = [*others, *characters] if above else [*characters, *others]
            two_lines = read_plate(both, options.country, templates, topn=options.topn,
                                   strict=options.region_strict)  # fmt: skip
            if two_lines is not None and two_lines.matches_template:
                choice, corners = two_lines, _row_corners([corners, other_line])
        if choice is None or not is_plate(choice, detection.confidence, second_look=second_look):
            return None
        plate_corners = _plate_corners(corners, left, top, crop.shape)
        return _plate_read(choice, plate_corners, detection, crop, image.shape, options, started)


def is_plate(choice: Choice, confidence: float, *, second_look: bool) -> bool:
    """Whether a reading is reported as a plate: from a sure detection of the first look, whatever
    it reads; from a weak one, only where it fits a region's form; from a sure one of the second
    look (at 960 the detector is as sure of car badges and dealer names: TAURUS, CRESAUTO), where it
    fits a form or looks like a registration (5-8 characters, a digit among them: vanity and
    older forms missing from the table are kept)."""
    if choice.matches_template:
        return True
    if confidence < SURE_DETECTION:
        return False
    return not second_look or PLATE_LIKE.match(choice.plate) is not None


def padded_crop(image: Image, box: tuple[float, float, float, float]) -> tuple[Image, int, int]:
    """The pixels of a detector's box widened by PAD_X and PAD_Y within the image (what the PP-OCR
    path reads), and the crop's top-left corner."""
    height, width = image.shape[:2]
    x1, y1, x2, y2 = box
    pad_x, pad_y = PAD_X * (x2 - x1), PAD_Y * (y2 - y1)
    left, top = int(max(0, x1 - pad_x)), int(max(0, y1 - pad_y))
    right, bottom = int(min(width, x2 + pad_x)), int(min(height, y2 + pad_y))
    return image[top:bottom, left:right], left, top


def _plate_read(
    choice: Choice, corners: tuple[Point, Point, Point, Point], detection: Detection, crop: Image,
    shape: tuple[int, ...], options: Options, started: float,
) -> PlateRead:  # fmt: skip
    height, width = shape[:2]
    return PlateRead(
        plate=choice.plate,
        confidence=choice.confidence,
        matches_template=choice.matches_template,
        region=choice.region,
        region_confidence=choice.region_confidence,
        coordinates=corners,
        candidates=choice.candidates,
        processing_time_ms=round((time.perf_counter() - started) * 1000, 3),
        requested_topn=options.topn,
        vehicle_region=_vehicle_region(detection, detection.x2 - detection.x1, width, height),
        plate_crop_jpeg=encode_jpeg(crop) if options.plate_crop else None,
        detection_confidence=round(detection.confidence, 4),
    )


def _overlap(a: Detection, b: Detection) -> float:
    """The share of the smaller box that lies inside the other."""
    width = min(a.x2, b.x2) - max(a.x1, b.x1)
    height = min(a.y2, b.y2) - max(a.y1, b.y1)
    if width <= 0 or height <= 0:
        return 0.0
    smaller = min((a.x2 - a.x1) * (a.y2 - a.y1), (b.x2 - b.x1) * (b.y2 - b.y1))
    return width * height / smaller


def _plate_corners(
    corners: NDArray[np.float32], left: int, top: int, crop_shape: tuple[int, ...]
) -> tuple[Point, Point, Point, Point]:
    """The plate's corners in the image: the box of its registration's characters (the box the
    OpenALPR benchmark annotates as the plate: as wide as the characters, about as tall), or the
    detector's box where no text line was found."""
    points = [
        Point(round(float(min(max(0, x), crop_shape[1])) + left), round(float(min(max(0, y), crop_shape[0])) + top))
        for x, y in corners
    ]
    return points[0], points[1], points[2], points[3]


def _vehicle_region(detection: Detection, plate_width: float, width: int, height: int) -> Box:
    """A square around the plate, three plate widths wide, clamped to the image (an estimate)."""
    side = int(min(width, height, 3 * plate_width))
    center_x = (detection.x1 + detection.x2) / 2
    center_y = (detection.y1 + detection.y2) / 2
    x = int(min(max(0, center_x - side / 2), width - side))
    y = int(min(max(0, center_y - side / 2), height - side))
    return Box(x, y, side, side)
