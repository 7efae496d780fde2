"""Hostile input at the doors: images and records made to break a decoder, and unusual images that
real cameras and phones send. Each ends in a clear error with a dead-letter reason, or is read; no
other exception escapes, and the worker goes on with the frames around it."""

from __future__ import annotations

from collections import Counter
from functools import cache

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from platestream.errors import SchemaError
from platestream.kafka import read_topic
from platestream.schemas import SCHEMA_NAMES, Codec, WireFormat
from platestream.settings import Settings
from platestream.workers.engine import Engine, Options
from platestream.workers.engine.base import Image
from platestream.workers.engine.images import ImageError, decode_image
from platestream.workers.synthetic import street_scene
from tests.hostile import Case, corpus, saved, with_orientation
from tests.test_schemas import SAMPLES
from tests.worker_tools import frame_record, running_worker, send_frames, worker_settings


@cache
def scene() -> Image:
    return street_scene("AB12CDE", seed=1, plate_width=280)


@cache
def cases() -> list[Case]:
    return corpus(scene())


@cache
def small_images() -> list[bytes]:
    from PIL import Image as PILImage

    rgb = PILImage.fromarray(np.random.default_rng(2).integers(0, 255, (24, 32, 3), np.uint8))
    return [saved(rgb, kind) for kind in ("JPEG", "PNG", "WEBP", "GIF", "TIFF", "BMP")]


def _outcome(data: bytes) -> str:
    try:
        pixels = decode_image(data)
    except ImageError as error:
        return error.reason if str(error) else "an error that says nothing"
    assert pixels.shape[2:] == (3,)
    assert pixels.dtype == np.uint8
    assert pixels.size > 0
    return "ok"


@pytest.mark.parametrize("index", range(len(cases())), ids=[case.name for case in cases()])
def test_each_image_of_the_corpus_is_read_or_refused_with_its_reason(index: int) -> None:
    case = cases()[index]
    assert _outcome(case.data) == case.outcome


def test_a_decompression_bomb_is_refused_from_its_header_saying_how_big_it_claims_to_be() -> None:
    bomb = next(case for case in cases() if case.name == "png declaring 50000x50000")
    with pytest.raises(ImageError, match=r"declares 2,500,000,000 pixels, over the limit of 40,000,000"):
        decode_image(bomb.data)


@given(st.binary(max_size=4096))
@settings(max_examples=300, deadline=None)
def test_random_bytes_never_escape_as_anything_but_an_image_error(data: bytes) -> None:
    _outcome(data)


@given(st.data())
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_images_cut_short_or_with_bytes_changed_are_read_or_refused_cleanly(data: st.DataObject) -> None:
    image = bytearray(data.draw(st.sampled_from(small_images())))
    for _ in range(data.draw(st.integers(0, 8))):
        image[data.draw(st.integers(0, len(image) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(image)))
    _outcome(bytes(image[:cut]))


@pytest.mark.parametrize("orientation", [6, 8, 3])
def test_a_photo_stored_turned_is_read_upright_as_its_exif_says(engine: Engine, orientation: int) -> None:
    upright = scene()
    pixels = decode_image(with_orientation(upright, orientation))
    assert pixels.shape == upright.shape
    (result,) = engine.recognize([pixels], Options(country="eu"))
    assert [plate.plate for plate in result.plates] == ["AB12CDE"]


@pytest.mark.parametrize("name", SCHEMA_NAMES)
@pytest.mark.parametrize("wire_format", list(WireFormat))
def test_a_record_cut_anywhere_is_a_schema_error(name: str, wire_format: WireFormat) -> None:
    codec = Codec(name, wire_format, schema_id=7 if wire_format is WireFormat.CONFLUENT else None)
    whole = codec.encode(SAMPLES[name])
    for cut in range(len(whole)):
        with pytest.raises(SchemaError):
            codec.decode(whole[:cut])


@pytest.mark.parametrize("name", SCHEMA_NAMES)
@given(data=st.binary(max_size=512))
@settings(max_examples=150, deadline=None)
def test_random_bytes_as_a_record_never_escape_as_anything_but_a_schema_error(name: str, data: bytes) -> None:
    try:
        record: object = Codec(name).decode(data)
    except SchemaError as error:
        record = str(error)  # the error says what is wrong
    assert record, "a record (some short byte strings are valid ones) or an error that says why not"


@pytest.mark.kafka
def test_the_worker_dead_letters_each_hostile_input_and_reads_every_other_frame(
    kafka_settings: Settings, engine: Engine
) -> None:
    from platestream.schemas.codec import fingerprint, schema

    frames = [frame_record("h", number, image=case.data) for number, case in enumerate(cases())]
    good = Codec("frame").encode(frame_record("h", 1000, image=cases()[0].data))
    other_schema = b"\xc3\x01" + fingerprint(schema("heartbeat")) + good[10:]
    unknown_schema = b"\xc3\x01" + b"\x00" * 8 + good[10:]
    raw = [(b"h", good[: len(good) // 3]), (b"h", other_schema), (b"h", unknown_schema), (b"h", b"\x00" * 3)]
    send_frames(kafka_settings, frames, raw=raw)
    hostile = [case for case in cases() if case.outcome != "ok"]
    with running_worker(worker_settings(kafka_settings, batch_size=4), engine):
        letters = read_topic(kafka_settings, "dead_letter", "dead_letter", count=len(hostile) + len(raw), timeout_s=90)
        results = read_topic(kafka_settings, "alpr_results", "alpr_results", count=len(frames) - len(hostile),
                             timeout_s=90)  # fmt: skip
    reasons = Counter(letter["reason"] for _, letter in letters)
    assert reasons == Counter(case.outcome for case in hostile) + Counter({"schema_invalid": len(raw)})
    assert all(letter["error_message"] for _, letter in letters)
    read = {record["frame_number"]: record for _, record in results}
    expected = {number for number, case in enumerate(cases()) if case.outcome == "ok"}
    assert set(read) == expected, "every good frame has its result, and only those"
    turned = [n for n, case in enumerate(cases()) if "orientation" in case.name]
    assert all([r["plate"] for r in read[n]["results"]] == ["AB12CDE"] for n in turned), "phone photos read upright"
