"""Drawing an engine's reads onto the image they came from, for a person to look at."""

from __future__ import annotations

import cv2
import numpy as np

from platestream.workers.engine import Image, ImageResult

BOX = (60, 220, 60)  # BGR green
TEXT = (255, 255, 255)


def annotate(image: Image, result: ImageResult) -> Image:
    """A copy of `image` with each plate's corners outlined and its text and confidence written
    above it; lines and letters scale with the image."""
    drawn = image.copy()
    scale = max(0.5, max(drawn.shape[:2]) / 1600)
    thickness = max(1, round(2 * scale))
    for plate in result.plates:
        points = np.array([[p.x, p.y] for p in plate.coordinates], dtype=np.int32)
        cv2.polylines(drawn, [points], isClosed=True, color=BOX, thickness=thickness, lineType=cv2.LINE_AA)
        label = f"{plate.plate} {plate.confidence:.0f}%"
        if plate.region:
            label += f" {plate.region}"
        (width, height), baseline = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.8 * scale, thickness)
        left, top = int(points[:, 0].min()), int(points[:, 1].min())
        y = top - 6 if top - height - baseline - 6 > 0 else int(points[:, 1].max()) + height + 6
        cv2.rectangle(drawn, (left, y - height - 4), (left + width + 6, y + baseline), BOX, -1)
        cv2.putText(drawn, label, (left + 3, y), cv2.FONT_HERSHEY_SIMPLEX, 0.8 * scale, TEXT, thickness, cv2.LINE_AA)
    return drawn
