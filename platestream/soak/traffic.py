"""The soak's traffic, with its truth: vehicles passing cameras, each seen in a few frames."""

from __future__ import annotations

import random
from dataclasses import dataclass

from platestream.aggregator.simulate import random_plate
from platestream.workers.engine.images import encode_jpeg
from platestream.workers.synthetic import street_scene

START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
FRAME_MS = 200
WIDTH, HEIGHT = 960, 540


@dataclass(frozen=True)
class Frame:
    camera: int
    capture_ms: int
    plate: str  # the truth
    vehicle: int
    center_x: int

    @property
    def key(self) -> str:
        """The S3 key the frame is stored under; the backfill reads camera and time from it."""
        return f"frames/{self.camera}/{self.capture_ms}.jpg"


KEY_PATTERN = r"frames/(?P<camera>\d+)/(?P<time>\d{13})\."


def traffic(vehicles: int, *, cameras: int = 2, seed: int = 0) -> list[Frame]:
    """`vehicles` passes, spread over `cameras`, each 3-6 frames of a plate crossing the view;
    a camera's passes are 6-12 s apart (apart as groups: more than the grouping's time delta)."""
    rng = random.Random(seed)
    clock = {camera: START_MS for camera in range(1, cameras + 1)}
    frames = []
    for vehicle in range(vehicles):
        camera = rng.randint(1, cameras)
        clock[camera] += rng.randint(6_000, 12_000)
        plate = random_plate(rng)
        count = rng.randint(3, 6)
        step = rng.choice((-1, 1)) * rng.randint(40, 70)
        start_x = WIDTH // 2 - step * count // 2
        for n in range(count):
            frames.append(Frame(camera, clock[camera] + n * FRAME_MS, plate, vehicle, start_x + n * step))
    return sorted(frames, key=lambda f: (f.camera, f.capture_ms))


def render(frame: Frame) -> bytes:
    """The camera's JPEG of `frame`."""
    scene = street_scene(frame.plate, WIDTH, HEIGHT, seed=frame.vehicle, plate_width=220, center_x=frame.center_x)
    return encode_jpeg(scene, quality=88)
