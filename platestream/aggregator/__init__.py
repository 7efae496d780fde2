"""Aggregator: group the reads of one vehicle passing a camera into one alpr_group record."""

from platestream.aggregator.grouping import Group, Grouper, GroupingConfig, Read, reads_from_results
from platestream.aggregator.records import alpr_group, vote
from platestream.aggregator.similarity import canonical, distance, similar

__all__ = [
    "Group",
    "Grouper",
    "GroupingConfig",
    "Read",
    "alpr_group",
    "canonical",
    "distance",
    "reads_from_results",
    "similar",
    "vote",
]
