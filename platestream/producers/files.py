"""`platestream produce files PATH...`: local images and folders as frames with inline bytes."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from platestream.errors import PlatestreamError
from platestream.settings import FilesSettings

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
    skip: int = 0,
) -> Iterator[dict[str, Any]]:
    """One frame record per image, after the first `skip` (counted, not read). Camera: `camera_id`,
    else the folder's name; frame numbers count per camera in file order; capture time is the
    file's modification time (to the millisecond)."""
    numbers: dict[str, int] = {}
    for index, path in enumerate(images):
        camera = camera_id or path.parent.name or "files"
        numbers[camera] = numbers.get(camera, -1) + 1
        if index < skip:
            continue
        stat = path.stat()
        if stat.st_size > max_bytes:
            raise SourceError(f"{path} is {stat.st_size} bytes, over the limit of {max_bytes}")
        yield {
            "camera_id": camera,
            "frame_number": numbers[camera],
            "capture_time_ms": stat.st_mtime_ns // 1_000_000,
            "source_kind": "file",
            "image": path.read_bytes(),
            "image_ref": None,
            "content_type": CONTENT_TYPES[path.suffix.lower()],
            "source_uri": str(path),
            "options": options,
        }


def send_files(
    settings: FilesSettings,
    images: list[Path],
    options: dict[str, Any] | None,
    *,
    source: str,
    stopping: Callable[[], bool],
) -> tuple[int, int, bool]:
    """Send `images` in transactions with checkpoints under `settings.checkpoint_id`, going on after
    the last file an earlier run with that id committed; return how many this run sent, how many
    all runs sent, and whether all were sent."""
    from platestream.producers.checkpoints import Pace, last_checkpoint, send_checkpointed

    assert settings.checkpoint_id
    name = settings.checkpoint_id
    previous = last_checkpoint(settings, name)
    if previous and previous["done"]:
        return 0, int(previous["objects_produced"]), True
    before = int(previous["objects_produced"]) if previous else 0
    after = str(previous["last_key"]) if previous else ""
    if before and (before > len(images) or str(images[before - 1]) != after):
        now = str(images[before - 1]) if before <= len(images) else f"only {len(images)} files"
        raise SourceError(
            f"checkpoint {name!r} has sent {before} files, the last {after}, but file {before} is now {now}: "
            "the files changed since; send them under a new --checkpoint-id"
        )
    frames = file_frames(images, camera_id=settings.camera_id, options=options, max_bytes=settings.max_image_bytes,
                         skip=before)  # fmt: skip
    pace = Pace(settings.rate, settings.batch_size, settings.batch_max_s)
    sent, finished = send_checkpointed(settings, name, source,
                                       ((frame["source_uri"], frame) for frame in frames), before=before,
                                       after_key=after, pace=pace, stopping=stopping)  # fmt: skip
    return sent, before + sent, finished
