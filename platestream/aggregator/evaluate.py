"""Scoring grouping against known traffic (`platestream bench aggregator`)."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass

from platestream.aggregator.grouping import Grouper, GroupingConfig, reads_from_results
from platestream.aggregator.records import alpr_group
from platestream.aggregator.simulate import frames_of, passes


@dataclass(frozen=True)
class GroupingScore:
    vehicles: int
    groups: int
    precision: float  # groups whose reads all belong to one vehicle, and that vehicle's only group
    recall: float  # vehicles that got exactly one pure group
    read_accuracy: float  # reads whose own top reading is the plate
    group_accuracy: float  # groups whose voted plate is their vehicle's plate
    results_per_second: float


def score(
    count: int = 2000, *, cameras: int = 4, seed: int = 0, misread_rate: float = 0.2, drop_rate: float = 0.1
) -> GroupingScore:
    config = GroupingConfig(min_plates=1)
    vehicles = passes(count, cameras=cameras, seed=seed)
    records, truth = frames_of(vehicles, seed=seed, misread_rate=misread_rate, drop_rate=drop_rate)
    grouper = Grouper(config)
    started = time.perf_counter()
    groups = []
    for record in records:
        for read in reads_from_results(record):
            groups.extend(grouper.add(read))
    groups.extend(grouper.close_all())
    built = [alpr_group(group, config) for group in groups]
    elapsed = time.perf_counter() - started
    owners = [{truth[(read.uuid, read.plate_index)] for read in group.reads} for group in groups]
    per_vehicle = Counter(next(iter(o)) for o in owners if len(o) == 1)
    pure_unique = [len(o) == 1 and per_vehicle[next(iter(o))] == 1 for o in owners]
    reads = [(read, truth[(read.uuid, read.plate_index)]) for group in groups for read in group.reads]
    right_groups = sum(
        1
        for owner, record in zip(owners, built, strict=True)
        if len(owner) == 1 and record["best_plate_number"] == vehicles[next(iter(owner))].plate
    )
    return GroupingScore(
        vehicles=len(vehicles),
        groups=len(groups),
        precision=sum(pure_unique) / len(groups) if groups else 0.0,
        recall=sum(1 for v in range(len(vehicles)) if per_vehicle[v] == 1) / len(vehicles),
        read_accuracy=sum(1 for read, v in reads if read.plate == vehicles[v].plate) / len(reads),
        group_accuracy=right_groups / len(groups) if groups else 0.0,
        results_per_second=len(records) / elapsed,
    )
