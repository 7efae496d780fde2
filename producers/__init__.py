"""Producers: turn cameras, video files, S3 prefixes and local folders into frame records."""

from producers.files import SourceError, file_frames, find_images
from producers.sink import Delivery, produce_frames

__all__ = ["Delivery", "SourceError", "file_frames", "find_images", "produce_frames"]
