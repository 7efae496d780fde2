"""Plates photographed in street scenes and cut out the way the engine cuts them.

A crop rendered or padded by hand is not what a reader meets at work: there the plate is a few
dozen pixels of a whole frame, JPEG-compressed with its surroundings (frame, bolts, bumper, a dealer's
name), and boxed by the detector, a little off. `scene_crop` mounts a plate (a rendered one or a
real training crop) on the back of a car in a frame of a camera's size, degrades the frame, runs
the engine's own detector on it and returns the detector's box around the plate, so that the
training data for a reader is cut by the same hands as the photographs it will read.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from platestream.training.render import Image, Rng

Box = tuple[float, float, float, float]
Detect = Callable[[Image], Sequence[tuple[Box, float]]]
MIN_IOU = 0.3  # a detection overlapping the plate less than this is not its box

FRAME_WIDTHS = (1280, 1280, 1280, 1920, 640, 480)
DEALER_WORDS = ("AUTO SALES", "MOTORS", "HONDA", "TOYOTA", "FORD", "CHEVROLET", "SUBARU", "NISSAN", "BMW",
                "AUTOHAUS", "CONCESSIONARIA", "DEALER", "CARS", "KIA")  # fmt: skip


@dataclass(frozen=True)
class SceneCrop:
    """The detector's box around a mounted plate, as the engine would read it."""

    frame: Image
    box: Box  # the detector's, in frame pixels
    plate: Box  # where the plate really is, in frame pixels
    confidence: float


def scene_crop(plate: Image, rng: Rng, detect: Detect) -> SceneCrop | None:
    """`plate` mounted in a street frame and found by `detect` (an image -> boxes with
    confidences); None when the detector does not find it, as the engine would not read it."""
    frame, quad = mount(plate, rng)
    x1, y1 = quad.min(0)
    x2, y2 = quad.max(0)
    truth = (float(x1), float(y1), float(x2), float(y2))
    found = [(iou(box, truth), box, confidence) for box, confidence in detect(frame)]
    matching = [f for f in found if f[0] >= MIN_IOU]
    if not matching:
        return None
    _, box, confidence = max(matching, key=lambda f: f[0])
    return SceneCrop(frame, box, truth, confidence)


def mount(plate: Image, rng: Rng) -> tuple[Image, np.ndarray]:
    """A frame of a camera's size with `plate` on the back of a car, seen at an angle, degraded as
    a camera would; returns the frame and the plate's four corners in it."""
    width = int(FRAME_WIDTHS[int(rng.integers(len(FRAME_WIDTHS)))])
    height = int(width * (9 / 16 if rng.random() < 0.8 else 3 / 4))
    share = float(np.clip(rng.lognormal(np.log(0.13), 0.5), 0.04, 0.45))  # of the frame's width
    plate_w = max(24, int(width * share))
    plate_h = max(10, int(plate_w * plate.shape[0] / plate.shape[1]))
    cx = int(rng.uniform(0.25, 0.75) * width)
    cy = int(rng.uniform(0.45, 0.85) * height)
    frame = _street(height, width, rng)
    _car(frame, cx, cy, plate_w, plate_h, rng)
    framed = _with_frame(plate, rng)
    quad = _place(frame, framed.image, cx, cy, plate_w, plate_h, framed.inner, rng)
    return _camera(frame, quad, rng), quad


def iou(a: Box, b: Box) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@dataclass(frozen=True)
class _Framed:
    image: Image
    inner: tuple[int, int, int, int]  # the plate inside its frame: x1, y1, x2, y2


def _street(height: int, width: int, rng: Rng) -> Image:
    """Road below, buildings or sky above, at low resolution and scaled up (cheap and smooth)."""
    small_h, small_w = max(4, height // 16), max(4, width // 16)
    top = rng.uniform(60, 220, 3)
    road = rng.uniform(50, 140) + rng.uniform(-10, 10, 3)
    rows = np.linspace(0, 1, small_h, dtype=np.float32)[:, None, None]
    horizon = rng.uniform(0.2, 0.5)
    base = np.where(rows < horizon, top * (1 - 0.4 * rows), road * (0.75 + 0.5 * rows))
    small = np.broadcast_to(base, (small_h, small_w, 3)).astype(np.float32)
    small = small + rng.normal(0, rng.uniform(4, 25), small.shape).astype(np.float32)
    frame = cv2.resize(np.clip(small, 0, 255).astype(np.uint8), (width, height), interpolation=cv2.INTER_LINEAR)
    for _ in range(int(rng.integers(0, 6))):  # other cars, poles, signs
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        w, h = int(rng.integers(width // 20, width // 3)), int(rng.integers(height // 20, height // 3))
        cv2.rectangle(frame, (x, y), (x + w, y + h), _colour(rng), -1)
    return np.asarray(frame, dtype=np.uint8)


def _colour(rng: Rng) -> tuple[int, int, int]:
    grey = rng.random() < 0.5  # most cars are white, black, grey or silver
    if grey:
        value = int(rng.integers(15, 240))
        return value, value, value
    return int(rng.integers(0, 256)), int(rng.integers(0, 256)), int(rng.integers(0, 256))


def _car(frame: Image, cx: int, cy: int, plate_w: int, plate_h: int, rng: Rng) -> None:
    """The back (or front) of a car around the plate: body, lights or grille, bumper, a recess."""
    body = _colour(rng)
    half_w = int(plate_w * rng.uniform(1.6, 2.4))
    top, bottom = cy - int(plate_w * rng.uniform(1.0, 1.6)), cy + int(plate_w * rng.uniform(0.4, 0.7))
    cv2.rectangle(frame, (cx - half_w, top), (cx + half_w, bottom), body, -1)
    window = int(rng.integers(20, 70))
    cv2.rectangle(frame, (cx - int(half_w * 0.8), top + 4), (cx + int(half_w * 0.8), top + int(plate_w * 0.55)),
                  (window, window, window + 5), -1)  # fmt: skip
    light = (int(rng.integers(0, 60)), int(rng.integers(0, 60)), int(rng.integers(120, 256)))
    if rng.random() < 0.3:  # a front: white lights and a grille
        light = (230, 230, 230)
        for k in range(int(rng.integers(2, 6))):
            y = cy - plate_h - 4 - k * max(3, plate_h // 3)
            cv2.line(frame, (cx - half_w // 2, y), (cx + half_w // 2, y), (30, 30, 30), max(1, plate_h // 8))
    light_w, light_h = int(plate_w * 0.45), max(3, int(plate_h * rng.uniform(0.6, 1.3)))
    for side in (-1, 1):
        x = cx + side * (half_w - light_w // 2 - 4)
        y = cy - int(plate_h * rng.uniform(0.8, 2.2))
        cv2.rectangle(frame, (x - light_w // 2, y - light_h), (x + light_w // 2, y), light, -1)
    bumper = tuple(int(v * 0.5) for v in body) if rng.random() < 0.5 else (35, 35, 35)
    cv2.rectangle(frame, (cx - half_w, cy + plate_h // 2 + int(plate_h * 0.3)), (cx + half_w, bottom), bumper, -1)
    if rng.random() < 0.6:
        pad = max(2, plate_w // 14)
        shade = tuple(int(v * 0.6) for v in body)
        cv2.rectangle(frame, (cx - plate_w // 2 - pad, cy - plate_h // 2 - pad),
                      (cx + plate_w // 2 + pad, cy + plate_h // 2 + pad), shade, -1)  # fmt: skip


def _with_frame(plate: Image, rng: Rng) -> _Framed:
    """The plate in a holder now and then: a dark or chrome rim, a dealer's name below or above,
    bolts; the plate itself unchanged inside."""
    height, width = plate.shape[:2]
    if rng.random() < 0.4:
        image = plate.copy()
        _bolts(image, rng)
        return _Framed(image, (0, 0, width, height))
    side = max(2, int(width * rng.uniform(0.015, 0.05)))
    above = max(2, int(height * rng.uniform(0.03, 0.12)))
    below = max(2, int(height * rng.uniform(0.05, 0.25)))
    rim = (25, 25, 25) if rng.random() < 0.6 else (190, 190, 195)
    image = cv2.copyMakeBorder(plate, above, below, side, side, cv2.BORDER_CONSTANT, value=rim)
    _bolts(image[above : above + height, side : side + width], rng)
    if below > height * 0.12 and rng.random() < 0.7:
        word = DEALER_WORDS[int(rng.integers(len(DEALER_WORDS)))]
        ink = (235, 235, 235) if rim[0] < 100 else (20, 20, 20)
        scale = max(0.2, (below * 0.7) / 22)
        (text_w, _), _ = cv2.getTextSize(word, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        x = max(0, (image.shape[1] - text_w) // 2)
        cv2.putText(image, word, (x, image.shape[0] - int(below * 0.2)), cv2.FONT_HERSHEY_SIMPLEX, scale, ink,
                    max(1, int(scale * 1.5)), cv2.LINE_AA)  # fmt: skip
    return _Framed(image, (side, above, side + width, above + height))


def _bolts(plate: Image, rng: Rng) -> None:
    if rng.random() < 0.5:
        return
    height, width = plate.shape[:2]
    radius = max(1, width // 45)
    colour = (150, 150, 150) if rng.random() < 0.6 else (40, 40, 40)
    for x in (int(width * 0.2), int(width * 0.8)):
        for y in (int(height * 0.12), int(height * 0.88)) if rng.random() < 0.5 else (int(height * 0.12),):
            cv2.circle(plate, (x, y), radius, colour, -1, cv2.LINE_AA)


def _place(frame: Image, framed: Image, cx: int, cy: int, plate_w: int, plate_h: int,
           inner: tuple[int, int, int, int], rng: Rng) -> np.ndarray:  # fmt: skip
    """Warps the framed plate into the frame, the plate `plate_w` wide at (cx, cy), turned and seen
    from the side; returns the plate's (not the frame's) corners."""
    height, width = framed.shape[:2]
    scale = plate_w / (inner[2] - inner[0])
    source = np.array([[0, 0], [width, 0], [width, height], [0, height]], np.float32)
    target = (source - np.array([width, height], np.float32) / 2) * scale
    yaw = rng.uniform(-0.35, 0.35)  # the far side shorter: a camera to one side of the lane
    target[:, 0] *= 1 - abs(yaw) * 0.5
    far = (1, 2) if yaw > 0 else (0, 3)
    target[list(far), 1] *= 1 - abs(yaw) * 0.3
    pitch = rng.uniform(0.0, 0.25)  # a camera above: the plate's top wider than its bottom
    target[[0, 1], 0] *= 1 + pitch * 0.15
    angle = np.deg2rad(rng.normal(0, 3.5))
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]], np.float32)
    target = target @ rotation.T + np.array([cx, cy], np.float32)
    target += rng.normal(0, 0.01, target.shape).astype(np.float32) * plate_w
    matrix = cv2.getPerspectiveTransform(source, target.astype(np.float32))
    size = (frame.shape[1], frame.shape[0])
    x1, y1 = np.floor(target.min(0)).astype(int) - 2
    x2, y2 = np.ceil(target.max(0)).astype(int) + 2
    x1, y1, x2, y2 = max(0, x1), max(0, y1), min(size[0], x2), min(size[1], y2)
    if x2 > x1 and y2 > y1:  # warp only the plate's neighbourhood: the whole frame costs 10x more
        shift = np.array([[1, 0, -x1], [0, 1, -y1], [0, 0, 1]], np.float64)
        local = shift @ matrix
        patch = cv2.warpPerspective(framed, local, (x2 - x1, y2 - y1), flags=cv2.INTER_AREA)
        mask = cv2.warpPerspective(np.full((height, width), 255, np.uint8), local, (x2 - x1, y2 - y1))
        region = frame[y1:y2, x1:x2]
        region[mask > 127] = patch[mask > 127]
    corners = np.array([[inner[0], inner[1]], [inner[2], inner[1]], [inner[2], inner[3]], [inner[0], inner[3]]],
                       np.float32)  # fmt: skip
    return np.asarray(cv2.perspectiveTransform(corners[None], matrix)[0], dtype=np.float32)


def _camera(frame: Image, quad: np.ndarray, rng: Rng) -> Image:
    """A camera's faults near the plate (where they matter, and cheap): light and shade, focus,
    noise and JPEG; the frame's resolution already makes a far plate small."""
    centre = quad.mean(0)
    span = float(np.ptp(quad[:, 0])) * 3
    x1, y1 = int(max(0, centre[0] - span)), int(max(0, centre[1] - span * 0.7))
    x2, y2 = int(min(frame.shape[1], centre[0] + span)), int(min(frame.shape[0], centre[1] + span * 0.7))
    region = frame[y1:y2, x1:x2].astype(np.float32)
    region = (region - 128) * rng.uniform(0.55, 1.25) + 128 + rng.uniform(-60, 50)
    if rng.random() < 0.3:  # a shadow edge
        h, w = region.shape[:2]
        xs = np.arange(w, dtype=np.float32)[None, :] - w * rng.uniform(0.3, 0.7)
        ys = np.arange(h, dtype=np.float32)[:, None] - h * rng.uniform(0.3, 0.7)
        direction = rng.normal(0, 1, 2)
        region *= np.where(xs * direction[0] + ys * direction[1] > 0, rng.uniform(0.4, 0.8), 1.0)[:, :, None]
    if rng.random() < 0.6:
        region = np.asarray(cv2.GaussianBlur(region, (0, 0), rng.uniform(0.4, 1.4)), dtype=np.float32)
    if rng.random() < 0.6:
        region += rng.normal(0, rng.uniform(1, 7), region.shape).astype(np.float32)
    patch = np.clip(region, 0, 255).astype(np.uint8)
    if rng.random() < 0.8:
        ok, encoded = cv2.imencode(".jpg", patch, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(25, 92))])
        decoded = cv2.imdecode(encoded, cv2.IMREAD_COLOR) if ok else None
        if decoded is not None:
            patch = np.asarray(decoded, dtype=np.uint8)
    frame = frame.copy()
    frame[y1:y2, x1:x2] = patch
    return frame
