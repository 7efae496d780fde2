"""Grouping reads into vehicle passes: pure logic, no broker."""

from __future__ import annotations

from typing import Any

import pytest

from platestream.aggregator import (
    Grouper,
    GroupingConfig,
    Read,
    alpr_group,
    canonical,
    distance,
    reads_from_results,
    similar,
)
from platestream.aggregator.evaluate import score
from platestream.schemas import Codec

T0 = 1_700_000_000_000


def read(plate: str, t: int, x: float = 500, *, camera: int = 1, confidence: float = 90.0,
         candidates: tuple[str, ...] = (), frame: int | None = None,
         vehicle: dict[str, int] | None = None, vehicle_crop: str | None = None) -> Read:  # fmt: skip
    record: dict[str, Any] = {
        "epoch_time": T0 + t, "img_width": 1280, "img_height": 720, "camera_id": camera, "uuid": f"u-{camera}-{t}",
        "agent_uid": "a", "agent_version": "1", "agent_type": "t", "company_id": None,
        "frame_number": t // 100 if frame is None else frame,
        "results": [{
            "plate": plate, "confidence": confidence, "matches_template": 1, "plate_index": 0, "region": "us-ca",
            "region_confidence": 80.0, "processing_time_ms": 1.0, "requested_topn": 10,
            "coordinates": [{"x": int(x), "y": 400}, {"x": int(x) + 120, "y": 400}, {"x": int(x) + 120, "y": 440},
                            {"x": int(x), "y": 440}],
            "candidates": [{"plate": c, "confidence": confidence - 5 * i, "matches_template": 1}
                           for i, c in enumerate((plate, *candidates))],
            "plate_crop_jpeg": None, "vehicle_region": vehicle, "vehicle_crop_jpeg": vehicle_crop,
        }],
    }  # fmt: skip
    (only,) = reads_from_results(record)
    return only


def run(reads: list[Read], config: GroupingConfig = GroupingConfig()) -> list[dict[str, Any]]:
    grouper = Grouper(config)
    groups = [group for r in reads for group in grouper.add(r)] + grouper.close_all()
    return [alpr_group(group, config, country="us") for group in groups]


def test_lookalike_distance() -> None:
    assert distance("ABC123", "ABC123") == 0
    assert distance("AB0123", "ABO123") == pytest.approx(0.3)
    assert distance("ABC123", "BC123") == 1
    assert distance("ABC123", "XYZ789") == 6
    assert similar(["ABC1234"], ["ABC1X34", "QQQ"]) == 1.0
    assert similar(["ABC1234"], ["ABC1Z34"]) == pytest.approx(0.3)
    assert similar(["ABC1234"], ["XYZ9876"]) is None
    assert canonical("B0SS") == canonical("8OS5")


def test_a_vehicle_misread_in_some_frames_gets_its_right_plate() -> None:
    seen = ["ABC1234", "A8C1234", "ABC1234", "BC1234", "ABC1Z34", "ABC1234"]
    reads = [read(plate, t * 100, 100 + t * 50) for t, plate in enumerate(seen)]
    (group,) = run(reads)
    assert group["best_plate_number"] == "ABC1234"
    assert group["uuids"] == [f"u-1-{t}" for t in range(0, 600, 100)]
    assert group["plate_indexes"] == [0] * 6
    assert (group["epoch_start"], group["epoch_end"]) == (T0, T0 + 500)
    assert (group["frame_start"], group["frame_end"]) == (0, 5)
    assert group["best_plate"]["plate"] == "ABC1234"
    assert group["candidates"][0]["plate"] == "ABC1234"
    assert group["travel_direction"] == 0.0  # left to right
    assert group["is_parked"] is False
    assert len(group["plate_path"]) == 6
    assert Codec("alpr_group").decode(Codec("alpr_group").encode(group)) == group


def test_interleaved_vehicles_make_one_group_each() -> None:
    reads = []
    for t in range(0, 1000, 100):
        reads.append(read("ABC1234", t, 100 + t * 0.4))
        reads.append(read("XYZ9876", t, 1100 - t * 0.4))
    groups = run(reads)
    assert sorted(g["best_plate_number"] for g in groups) == ["ABC1234", "XYZ9876"]
    directions = {g["best_plate_number"]: g["travel_direction"] for g in groups}
    assert directions == {"ABC1234": 0.0, "XYZ9876": 180.0}


def test_the_same_plate_far_away_in_the_image_is_another_vehicle() -> None:
    reads = [read("ABC1234", 0, 100), read("ABC1234", 100, 140), read("ABC1234", 200, 1100), read("ABC1234", 300, 1060)]
    assert len(run(reads)) == 2


def test_a_plate_seen_again_after_the_time_delta_is_a_new_pass() -> None:
    first = [read("ABC1234", t, 500) for t in (0, 100, 200)]
    later = [read("ABC1234", t, 500) for t in (10_000, 10_100)]
    groups = run([*first, *later])
    assert [len(g["uuids"]) for g in groups] == [3, 2]
    assert all(g["is_parked"] is False for g in groups)  # too short to call parked


def test_a_vehicle_that_stays_put_is_parked() -> None:
    (group,) = run([read("ABC1234", t, 500) for t in range(0, 3000, 500)])
    assert group["is_parked"] is True


def test_too_few_reads_and_low_confidence_reads_make_no_group() -> None:
    assert run([read("ABC1234", 0)]) == []
    assert run([read("ABC1234", t, confidence=60.0) for t in (0, 100, 200)]) == []


def test_a_group_is_sent_when_full() -> None:
    config = GroupingConfig(max_plates=3)
    grouper = Grouper(config)
    sent = [g for t in range(0, 500, 100) for g in grouper.add(read("ABC1234", t, 500))]
    assert [len(g.reads) for g in sent] == [3]


def test_groups_close_in_event_time_not_wall_time() -> None:
    grouper = Grouper()
    assert grouper.add(read("ABC1234", 0)) == []
    assert grouper.add(read("ABC1234", 100)) == []
    # An hour-old backfill: nothing closes until capture time moves past the delta plus lateness.
    assert grouper.add(read("XYZ9876", 6000, 900)) == []
    closed = grouper.add(read("XYZ9876", 6600, 900))
    assert [g.reads[0].plate for g in closed] == ["ABC1234"]


def test_reads_arriving_out_of_order_within_the_lateness_bound_join_their_group() -> None:
    reads = [read("ABC1234", t, 100 + t * 0.3) for t in (0, 100, 300, 400)]
    late = read("ABC1234", 200, 160)
    (group,) = run([*reads[:3], reads[3], late])
    assert len(group["uuids"]) == 5
    assert group["uuids"] == sorted(group["uuids"], key=lambda u: int(u.rsplit("-", 1)[1]))


def test_groups_span_cameras_only_when_asked() -> None:
    reads = [read("ABC1234", 0, camera=1), read("ABC1234", 100, camera=2), read("ABC1234", 200, camera=1),
             read("ABC1234", 300, camera=2)]  # fmt: skip
    assert len(run(reads)) == 2
    assert len(run(reads, GroupingConfig(span_cameras=True))) == 1


def test_simulated_traffic_groups_precisely() -> None:
    result = score(300, cameras=2, seed=3)
    assert result.precision > 0.95
    assert result.recall > 0.95
    assert result.group_accuracy > result.read_accuracy


def test_a_group_carries_the_vehicles_path_and_its_cameras_position() -> None:
    from platestream.settings import AggregatorSettings, load

    reads = [read("ABC1234", t, 400 + t, vehicle={"x": 300 + t, "y": 200, "width": 360, "height": 360})
             for t in (0, 100, 200)]  # fmt: skip
    reads.append(read("ABC1234", 300, 700))  # a read without a vehicle region adds no point
    settings = load(AggregatorSettings, camera_gps="1=52.3731,4.8922; gate-2=-33.9,18.4")
    grouper = Grouper(GroupingConfig())
    (group,) = [g for r in reads for g in grouper.add(r)] + grouper.close_all()
    record = alpr_group(group, GroupingConfig(), gps=settings.gps_of(group.reads[0].camera_id))
    assert [(p["x"], p["w"], p["t"] - T0) for p in record["vehicle_path"]] == [(300, 360, 0), (400, 360, 100),
                                                                               (500, 360, 200)]  # fmt: skip
    assert (record["gps_latitude"], record["gps_longitude"]) == (52.3731, 4.8922)
    assert settings.gps_of("gate-2") == (-33.9, 18.4)
    assert settings.gps_of("unknown") is None
    assert Codec("alpr_group").decode(Codec("alpr_group").encode(record)) == record  # the contract takes it


@pytest.mark.parametrize("bad", ["1=91,4", "1=52", "=52,4", "1=north,east"])
def test_a_malformed_camera_position_is_refused_naming_the_entry(bad: str) -> None:
    from platestream.errors import ConfigError
    from platestream.settings import AggregatorSettings, load

    with pytest.raises(ConfigError, match="camera position"):
        load(AggregatorSettings, camera_gps=bad)


def test_a_group_carries_its_best_reads_vehicle_crop_once() -> None:
    """The vehicle crop of the read the group's plate comes from becomes the group's own
    vehicle_crop_jpeg (Rekor's field); it is not repeated inside best_plate."""
    reads = [read("ABC1234", 0, confidence=80.0, vehicle_crop="first"),
             read("ABC1234", 100, confidence=95.0, vehicle_crop="sharpest"),
             read("ABC1234", 200, confidence=85.0, vehicle_crop="last")]  # fmt: skip
    (record,) = run(reads)
    assert record["vehicle_crop_jpeg"] == "sharpest"
    assert record["best_plate"]["vehicle_crop_jpeg"] is None
    assert Codec("alpr_group").decode(Codec("alpr_group").encode(record))["vehicle_crop_jpeg"] == "sharpest"
