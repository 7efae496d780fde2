"""Producers: turn cameras, video files, S3 prefixes and local folders into frame records."""

from platestream.producers.files import SourceError, file_frames, find_images
from platestream.producers.sink import Delivery, produce_frames

__all__ = ["Delivery", "SourceError", "file_frames", "find_images", "produce_frames"]
