"""The soak: its fault schedule and its checks on their own, and a short run of the whole thing on
a three-node cluster, in which nothing may be lost or duplicated."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from platestream.aggregator.grouping import GroupingConfig
from platestream.soak.check import verify
from platestream.soak.faults import KINDS, schedule
from platestream.soak.traffic import traffic


def test_the_schedule_is_seeded_spread_and_holds_each_kind_once_a_round() -> None:
    first = schedule(100, seed=3, workers=2)
    assert first == schedule(100, seed=3, workers=2)
    assert first != schedule(100, seed=4, workers=2)
    assert sorted(fault.kind for fault in first) == sorted(KINDS)
    times = [fault.at_s for fault in first]
    assert times == sorted(times)
    assert times[0] > 0
    assert times[-1] < 100 * 0.7
    assert {f.target for f in first if f.kind.endswith("worker")} <= {"worker-1", "worker-2"}
    rounds = int(1200 * 0.7 // (12 * len(KINDS)))  # as many as fit a fault per 12 s of the 840 s window
    assert len(schedule(1200, seed=3, workers=2)) == len(KINDS) * rounds
    stores = schedule(1200, seed=3, workers=2, stores=("store", "store-pg"), producers=("p-1", "p-2"))
    assert {f.target for f in stores if f.kind == "kill-store"} == {"store", "store-pg"}
    assert {f.target for f in stores if f.kind == "kill-producer"} == {"p-1", "p-2"}
    assert {f.target for f in first if f.kind.endswith("s3")} == {"s3"}
    with pytest.raises(ValueError, match="unknown fault kinds"):
        schedule(100, seed=1, workers=1, kinds=["unplug-the-rack"])


def test_the_check_counts_what_was_lost_duplicated_and_injected() -> None:
    from platestream.soak.check import expected_groups
    from platestream.soak.traffic import Frame
    from tests.test_aggregator_service import traffic as simulated_results

    results = simulated_results(6, seed=2)
    config = GroupingConfig()
    blank = {"camera_id": 0, "best_plate_number": "", "epoch_start": 0, "epoch_end": 0}
    sent: list[dict[str, Any]] = [{"uuids": list(uuids), **blank} for uuids in expected_groups(results, config)]
    frames = [Frame(int(r["camera_id"]), int(r["epoch_time"]), "X", n, 0) for n, r in enumerate(results)]
    injected = {"original_reference": "s3://soak/frames/9/1.jpg"}
    clean = verify(frames, ["frames/9/1.jpg"], results, sent, sent, sent, [injected], config)
    assert clean.ok, clean
    assert (clean.frames_lost, clean.groups_lost, clean.groups_sent, clean.dead_letters) == (0, 0, len(sent), 1)
    stray = {"original_reference": "s3://soak/frames/1/5.jpg"}
    broken = verify([*frames, Frame(7, 1, "Y", 99, 0)], ["frames/9/1.jpg"], results + results[:1],
                    sent + sent[:1], sent[2:], sent + sent[-1:], [injected, stray], config)  # fmt: skip
    assert not broken.ok
    assert (broken.frames_lost, broken.frames_duplicated) == (1, 1)
    assert broken.groups_duplicated >= 1
    assert broken.stored_lost >= 2
    assert broken.dead_letters_unexpected == 1
    assert broken.lake_extra == 1
    keys = Counter(str(group["uuids"][0]) for group in sent)
    both = verify(frames, ["frames/9/1.jpg"], results, sent, sent, sent, [injected], config, postgres=sent,
                  delivered=keys + Counter(list(keys)[:1]))  # fmt: skip
    assert both.ok, both
    assert (both.groups_in_postgres, both.webhook_delivered, both.webhook_repeats) == (len(sent), len(sent), 1)
    short = verify(frames, ["frames/9/1.jpg"], results, sent, sent, sent, [injected], config, postgres=sent[1:],
                   delivered=Counter(list(keys)[1:]) + Counter(["no-such-group"]))  # fmt: skip
    assert not short.ok
    assert (short.postgres_lost, short.webhook_lost, short.webhook_unknown) == (1, 1, 1)


def test_traffic_is_seeded_and_each_frame_has_its_own_key() -> None:
    frames = traffic(20, seed=7)
    assert frames == traffic(20, seed=7)
    assert len({f.vehicle for f in frames}) == 20
    assert len({f.key for f in frames}) == len(frames)


@pytest.mark.kafka
@pytest.mark.slow
@pytest.mark.timeout(900)  # 90 s of traffic, twelve faults (four of 15 s), the 120 s idle flush, a busy machine
def test_a_short_soak_loses_and_duplicates_nothing(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    from platestream.settings import Settings
    from platestream.soak.run import Plan, print_report, run_soak

    try:
        postgres: str | None = request.getfixturevalue("postgres_dsn")
    except pytest.skip.Exception:
        postgres = None  # the rest of the soak still runs
    settings = Settings.model_validate({"state_dir": tmp_path / "state"})
    report = run_soak(settings, Plan(duration_s=90, vehicles=10, workers=2, seed=2, bad_objects=2,
                                     directory=tmp_path / "soak", postgres_dsn=postgres))  # fmt: skip
    print_report(report)
    assert report.ok, report
    assert report.results == report.frames_sent
    assert report.dead_letters == 2, "one bad S3 object and one bad file"
    assert sum(report.faults.values()) == len(KINDS)
    assert report.groups_sent >= report.vehicles // 2, "the vehicles made groups"
    assert report.webhook_delivered == report.groups_sent
    if postgres:
        assert report.groups_in_postgres == report.groups_sent
