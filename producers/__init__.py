"""Producers: turn cameras, video files, S3 prefixes and local folders into frame records."""

__all__: list[str] = []
