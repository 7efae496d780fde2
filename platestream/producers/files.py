"""`platestream produce files PATH...`: local images and folders as frames with inline bytes."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from platestream.errors import PlatestreamError

CONTENT_TYPES = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".bmp": "image/bmp",
    ".webp": "image/webp",
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
}


class SourceError(PlatestreamError):
    """A source named on the command line cannot be read."""


def find_images(paths: Iterable[Path]) -> list[Path]:
    """The image files among `paths`, folders searched recursively, in a stable order."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.suffix.lower() in CONTENT_TYPES and p.is_file()))
        elif path.is_file():
            if path.suffix.lower() not in CONTENT_TYPES:
                raise SourceError(f"{path} is not an image file (known: {', '.join(sorted(CONTENT_TYPES))})")
            found.append(path)
        else:
            raise SourceError(f"{path} does not exist")
    return found


def file_frames(
    images: Iterable[Path],
    *,
    camera_id: str | None = None,
    options: dict[str, Any] | None = None,
    max_bytes: int = 25 * 1024 * 1024,
) -> Iterator[dict[str, Any]]:
    """One frame record per image. Camera: `camera_id`, else the folder's name; frame numbers
    count per camera in file order; capture time is the file's modification time."""
    numbers: dict[str, int] = {}
    for path in images:
        camera = camera_id or path.parent.name or "files"
        size = path.stat().st_size
        if size > max_bytes:
            raise SourceError(f"{path} is {size} bytes, over the limit of {max_bytes}")
        numbers[camera] = numbers.get(camera, -1) + 1
        yield {
            "camera_id": camera,
            "frame_number": numbers[camera],
            "capture_time_ms": int(path.stat().st_mtime * 1000),
            "source_kind": "file",
            "image": path.read_bytes(),
            "image_ref": None,
            "content_type": CONTENT_TYPES[path.suffix.lower()],
            "source_uri": str(path),
            "options": options,
        }
