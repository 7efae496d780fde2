"""Aggregator: group the reads of one vehicle passing a camera into one alpr_group record."""

__all__: list[str] = []
