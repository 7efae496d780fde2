"""Synthetic plates on synthetic streets, for tests and speed benchmarks (no real photos needed)."""

from __future__ import annotations

import cv2
import numpy as np

from platestream.workers.engine.base import Image


def render_plate(text: str, *, width: int = 520, height: int = 110, style: str = "eu") -> Image:
    """A flat plate: dark characters on white (eu: with a blue strip on the left), black border."""
    plate = np.full((height, width, 3), 245, dtype=np.uint8)
    left = 0
    if style == "eu":
        left = int(width * 0.09)
        plate[:, :left] = (153, 51, 0)  # BGR blue strip
    cv2.rectangle(plate, (1, 1), (width - 2, height - 2), (20, 20, 20), 3)
    font = cv2.FONT_HERSHEY_DUPLEX
    scale = 1.0
    thickness = max(2, height // 20)
    (text_w, text_h), _ = cv2.getTextSize(text, font, scale, thickness)
    scale = min((width - left - 30) / text_w, (height * 0.62) / text_h)
    (text_w, text_h), _ = cv2.getTextSize(text, font, scale, thickness)
    x = left + (width - left - text_w) // 2
    y = (height + text_h) // 2
    cv2.putText(plate, text, (x, y), font, scale, (25, 25, 25), thickness, cv2.LINE_AA)
    return plate


def render_two_line_plate(top: str, bottom: str, *, width: int = 280, height: int = 200, style: str = "eu") -> Image:
    """A flat square plate of two lines (`top` over `bottom`), drawn as `render_plate` draws one:
    a European square plate, a Brazilian motorcycle's."""
    plate = np.full((height, width, 3), 245, dtype=np.uint8)
    left = int(width * 0.14) if style == "eu" else 0
    if left:
        plate[:, :left] = (153, 51, 0)  # BGR blue strip
    cv2.rectangle(plate, (1, 1), (width - 2, height - 2), (20, 20, 20), 3)
    font = cv2.FONT_HERSHEY_DUPLEX
    thickness = max(2, height // 28)
    for text, middle in ((top, 0.28), (bottom, 0.72)):
        (text_w, text_h), _ = cv2.getTextSize(text, font, 1.0, thickness)
        scale = min((width - left - 30) / text_w, (height * 0.34) / text_h)
        (text_w, text_h), _ = cv2.getTextSize(text, font, scale, thickness)
        x = left + (width - left - text_w) // 2
        cv2.putText(plate, text, (x, int(height * middle) + text_h // 2), font, scale, (25, 25, 25), thickness,
                    cv2.LINE_AA)  # fmt: skip
    return plate


def street_scene(
    text: str,
    width: int = 1280,
    height: int = 720,
    *,
    seed: int = 0,
    plate_width: int | None = None,
    tilt_degrees: float = 0.0,
    blur: int = 0,
    noise: float = 0.0,
    style: str = "eu",
    center_x: int | None = None,
    plate: Image | None = None,
) -> Image:
    """The back of a car on a road with the plate `text` mounted, optionally tilted, blurred and
    noised. An empty `text` gives the car without a plate; `center_x` places the car; `plate`
    mounts that plate image (any aspect) instead of drawing one."""
    rng = np.random.default_rng(seed)
    scene = _road(width, height, rng)
    plate_w = plate_width or width // 6
    plate_h = int(plate_w * (plate.shape[0] / plate.shape[1] if plate is not None else 110 / 520))
    cx, cy = width // 2 + int(rng.integers(-width // 8, width // 8 + 1)), int(height * 0.62)
    if center_x is not None:
        cx = center_x
    _car_rear(scene, cx, cy, plate_w, plate_h, rng)
    if plate is not None:
        _mount(scene, plate, cx, cy, plate_w, plate_h, tilt_degrees)
    elif text:
        _mount(scene, render_plate(text, width=520, height=110, style=style), cx, cy, plate_w, plate_h, tilt_degrees)
    if blur:
        scene = cv2.GaussianBlur(scene, (blur * 2 + 1, blur * 2 + 1), 0)
    if noise:
        scene = np.clip(scene + rng.normal(0, noise, scene.shape), 0, 255).astype(np.uint8)
    return scene


def _mount(scene: Image, plate: Image, cx: int, cy: int, plate_w: int, plate_h: int, tilt_degrees: float) -> None:
    height, width = scene.shape[:2]
    plate = cv2.resize(plate, (plate_w, plate_h), interpolation=cv2.INTER_AREA)
    source = np.array([[0, 0], [plate_w, 0], [plate_w, plate_h], [0, plate_h]], dtype=np.float32)
    angle = np.deg2rad(tilt_degrees)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]], dtype=np.float32)
    target = (source - source.mean(0)) @ rotation.T + np.array([cx, cy], dtype=np.float32)
    matrix = cv2.getPerspectiveTransform(source, target.astype(np.float32))
    warped = cv2.warpPerspective(plate, matrix, (width, height))
    mask = cv2.warpPerspective(np.full((plate_h, plate_w), 255, np.uint8), matrix, (width, height))
    scene[mask > 0] = warped[mask > 0]


def _road(width: int, height: int, rng: np.random.Generator) -> Image:
    """Asphalt below a horizon, sky-ish above, with grain."""
    rows = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
    sky = np.array([200, 180, 160], dtype=np.float32)
    asphalt = np.array([90, 90, 95], dtype=np.float32)
    scene = np.where(rows < 0.35, sky * (1 - rows * 0.5), asphalt * (0.8 + rows * 0.4))
    scene = np.broadcast_to(scene, (height, width, 3)).copy()
    scene += rng.normal(0, 6, scene.shape).astype(np.float32)
    return np.clip(scene, 0, 255).astype(np.uint8)


def _car_rear(scene: Image, cx: int, cy: int, plate_w: int, plate_h: int, rng: np.random.Generator) -> None:
    """The back of a car around (cx, cy): body, rear window, tail lights, bumper, plate recess."""
    body = tuple(int(c) for c in rng.integers(40, 200, size=3))
    half_w, top, bottom = int(plate_w * 1.9), cy - int(plate_w * 1.3), cy + int(plate_w * 0.55)
    cv2.rectangle(scene, (cx - half_w, top), (cx + half_w, bottom), body, -1)
    cv2.rectangle(scene, (cx - int(half_w * 0.8), top + 6), (cx + int(half_w * 0.8), top + int(plate_w * 0.6)),
                  (40, 35, 30), -1)  # fmt: skip
    light_w, light_h = int(plate_w * 0.5), int(plate_h * 1.2)
    for side in (-1, 1):
        x = cx + side * (half_w - light_w // 2 - 10)
        cv2.rectangle(scene, (x - light_w // 2, cy - light_h * 2), (x + light_w // 2, cy - light_h), (30, 30, 200), -1)
    cv2.rectangle(scene, (cx - half_w, cy + plate_h), (cx + half_w, bottom), (35, 35, 35), -1)  # bumper
    recess = (cx - plate_w // 2 - 8, cy - plate_h // 2 - 8), (cx + plate_w // 2 + 8, cy + plate_h // 2 + 8)
    cv2.rectangle(scene, recess[0], recess[1], (25, 25, 25), -1)
    for side in (-1, 1):  # wheels
        cv2.rectangle(scene, (cx + side * half_w - 25, bottom - 10), (cx + side * (half_w - 90), bottom + 40),
                      (15, 15, 15), -1)  # fmt: skip
