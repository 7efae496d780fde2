"""The default engine reads plates the tests render themselves, and speaks OpenALPR's JSON."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from platestream.cli import main
from platestream.schemas import Codec
from platestream.workers.benchmark import IOU_THRESHOLD, iou, plate_box
from platestream.workers.engine import Engine, Options
from platestream.workers.engine.default import SECOND_LOOK_SIZE, SURE_DETECTION, DefaultEngine, Detection
from platestream.workers.results import alpr_results
from platestream.workers.synthetic import render_plate, render_two_line_plate, street_scene

CASES = [
    ("AB12CDE", {}),
    ("KL35PQR", {"tilt_degrees": 8.0}),
    ("BRA2E19", {"blur": 1, "noise": 8.0}),
    ("RK346AL", {"tilt_degrees": -6.0, "noise": 5.0}),
    ("7XYZ123", {"style": "us"}),
]


@pytest.mark.parametrize(("text", "distortion"), CASES)
def test_rendered_plates_are_found_and_read(engine: Engine, text: str, distortion: dict[str, object]) -> None:
    image = street_scene(text, seed=1, plate_width=280, **distortion)  # type: ignore[arg-type]
    (result,) = engine.recognize([image], Options(country="eu"))
    assert [plate.plate for plate in result.plates] == [text]
    plate = result.plates[0]
    assert plate.candidates[0].plate == text
    xs = [p.x for p in plate.coordinates]
    assert 400 < min(xs) < max(xs) < 900  # on the car, around the image's middle third


@pytest.mark.parametrize(
    ("top", "bottom", "style", "country", "tilt"),
    [("GF", "938BC", "eu", "eu", 0.0), ("KP", "1821", "eu", "eu", 6.0), ("ABC", "1234", "br", "br", -5.0)],
)
def test_a_two_line_plate_is_read_top_line_first_and_boxed_whole(
    engine: Engine, top: str, bottom: str, style: str, country: str, tilt: float
) -> None:
    plate = render_two_line_plate(top, bottom, style=style)
    image = street_scene("", seed=1, plate=plate, plate_width=120, tilt_degrees=tilt)
    (result,) = engine.recognize([image], Options(country=country))
    assert [read.plate for read in result.plates] == [top + bottom]
    ys = [point.y for point in result.plates[0].coordinates]
    assert max(ys) - min(ys) > 0.6 * 120 * plate.shape[0] / plate.shape[1]  # both lines, not one


def test_a_line_as_tall_as_the_registration_does_not_join_a_registration_that_fits_a_form(engine: Engine) -> None:
    # KP1821 fits a European form (@@####); with the AT below it, KP1821AT would fit another
    # (Bulgaria's @@####@@): a registration that is a plate on its own is read alone.
    image = street_scene("", seed=2, plate=render_two_line_plate("KP1821", "AT"), plate_width=140)
    (result,) = engine.recognize([image], Options(country="eu"))
    assert [read.plate for read in result.plates] == ["KP1821"]


def test_an_image_without_a_plate_gives_no_results(engine: Engine) -> None:
    empty = street_scene("", seed=3)
    (result,) = engine.recognize([empty])
    assert result.plates == ()
    assert (result.width, result.height) == (1280, 720)


def test_a_batch_gives_one_result_per_image_in_order(engine: Engine) -> None:
    images = [street_scene(text, seed=2, plate_width=280) for text in ("AB12CDE", "XY98ZZT")]
    results = engine.recognize(images, Options(country="eu"))
    assert [r.plates[0].plate for r in results] == ["AB12CDE", "XY98ZZT"]


def test_a_batch_of_landscape_and_portrait_frames_is_read_with_boxes_in_place(engine: Engine) -> None:
    # Frames are scaled to the detector by their longer side, each shape run on its own.
    wide = street_scene("AB12CDE", 1920, 1080, seed=4, plate_width=420, center_x=1400)
    tall = street_scene("XY98ZZT", 720, 1280, seed=5, plate_width=300, center_x=360)
    results = engine.recognize([wide, tall, wide], Options(country="eu"))
    assert [[p.plate for p in r.plates] for r in results] == [["AB12CDE"], ["XY98ZZT"], ["AB12CDE"]]
    for result, (low, high) in zip(results, [(1150, 1650), (180, 540), (1150, 1650)], strict=True):
        xs = [p.x for p in result.plates[0].coordinates]
        assert low < min(xs) < max(xs) < high


@pytest.mark.parametrize(("text", "confidence", "reported"), [
    ("AB12CDE", 0.9, True), ("AB12CDE", 0.1, True), ("GWAGEN", 0.9, True), ("GWAGEN", 0.1, False),
])  # fmt: skip
def test_a_weak_detection_is_a_plate_only_when_its_reading_fits_a_pattern(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, text: str, confidence: float, reported: bool
) -> None:
    # GWAGEN (a vanity plate) fits no European pattern; AB12CDE fits the British one.
    image = street_scene(text, seed=1, plate_width=280)
    assert isinstance(engine, DefaultEngine)
    ((found, *_),) = engine.detector.detect([image])
    weak = dataclasses.replace(found, confidence=confidence)
    monkeypatch.setattr(engine.detector, "detect", lambda images, **_: [[weak] for _ in images])
    (result,) = engine.recognize([image], Options(country="eu"))
    assert [plate.plate for plate in result.plates] == ([text] if reported else [])


@pytest.mark.parametrize(("style", "text"), [("eu", "AB12CDE"), ("us", "7XYZ123")])
def test_the_reported_coordinates_box_the_registrations_characters(engine: Engine, style: str, text: str) -> None:
    # As the OpenALPR benchmark annotates a plate: the box of its characters, not the whole plate,
    # close enough that the benchmark counts it as found (the detector's box of the plate overlaps the
    # characters' by about 0.15). The text line's box is a little looser than the ink: 0.47-0.55 here,
    # by the CPU and OpenCV release.
    plate_width, plate_left, plate_top = 420, 430, 402  # where street_scene mounts this plate
    image = street_scene(text, seed=3, plate_width=plate_width, center_x=640, style=style)
    flat = render_plate(text, style=style)[6:-6, 6:-6]  # without its border
    ys, xs = np.nonzero(flat.max(2) < 100)
    scale = plate_width / 520
    characters = (plate_left + (xs.min() + 6) * scale, plate_top + (ys.min() + 6) * scale,
                  (xs.max() - xs.min()) * scale, (ys.max() - ys.min()) * scale)  # fmt: skip
    (result,) = engine.recognize([image], Options(country=style))
    assert [plate.plate for plate in result.plates] == [text]
    overlap = iou(plate_box(result.plates[0]), characters)
    assert overlap > IOU_THRESHOLD, (
        f"{plate_box(result.plates[0])} overlaps the characters {characters} by {overlap:.2f}"
    )


def test_a_plate_boxed_twice_is_reported_once(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    image = street_scene("AB12CDE", seed=1, plate_width=280)
    assert isinstance(engine, DefaultEngine)
    ((found, *_),) = engine.detector.detect([image])
    looser = dataclasses.replace(found, x1=found.x1 - 20, y1=found.y1 - 10, x2=found.x2 + 20, confidence=0.2)
    monkeypatch.setattr(engine.detector, "detect", lambda images, **_: [[found, looser] for _ in images])
    (result,) = engine.recognize([image], Options(country="eu"))
    assert [plate.plate for plate in result.plates] == ["AB12CDE"]


@pytest.mark.parametrize("stronger", [0, 1])
def test_only_the_strongest_weak_detection_of_an_image_is_read(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, stronger: int
) -> None:
    # Two readable plates side by side, both detected weakly: one weak read per image, the stronger.
    texts = ["AB12CDE", "XY98ZZT"]
    halves = [street_scene(text, seed=1, plate_width=280) for text in texts]
    image = np.hstack(halves)
    assert isinstance(engine, DefaultEngine)
    found = [engine.detector.detect([half])[0][0] for half in halves]
    width = halves[0].shape[1]
    boxes = [found[0], dataclasses.replace(found[1], x1=found[1].x1 + width, x2=found[1].x2 + width)]
    weak = [dataclasses.replace(box, confidence=0.2 if n == stronger else 0.1) for n, box in enumerate(boxes)]
    ordered = sorted(weak, key=lambda d: -d.confidence)  # as the detector gives them
    monkeypatch.setattr(engine, "second_look", 0)  # a frame without a plate read is looked at again: below
    monkeypatch.setattr(engine.detector, "detect", lambda images, **_: [ordered for _ in images])
    (result,) = engine.recognize([image], Options(country="eu"))
    assert [plate.plate for plate in result.plates] == [texts[stronger]]
    sure = [dataclasses.replace(box, confidence=0.9) for box in boxes]
    monkeypatch.setattr(engine.detector, "detect", lambda images, **_: [sure for _ in images])
    (result,) = engine.recognize([image], Options(country="eu"))
    assert sorted(plate.plate for plate in result.plates) == texts  # both read when detected surely


@pytest.mark.parametrize(
    ("text", "style", "country"), [("AB12CDE", "eu", "eu"), ("7XYZ123", "us", "us"), ("BRA2E19", "eu", "br")]
)
def test_a_far_plate_missed_at_the_detectors_size_is_found_by_the_second_look(
    engine: Engine, text: str, style: str, country: str
) -> None:
    # 60 pixels wide in a 1280x720 frame: 15 pixels at the detector's 320, too few to be sure of.
    image = street_scene(text, seed=1, plate_width=60, style=style)
    assert isinstance(engine, DefaultEngine)
    assert not any(found.confidence >= SURE_DETECTION for found in engine.detector.detect([image])[0])
    (result,) = engine.recognize([image, street_scene("", seed=3)], Options(country=country))[:1]
    assert [plate.plate for plate in result.plates] == [text]
    xs = [p.x for p in result.plates[0].coordinates]
    assert 400 < min(xs) < max(xs) < 900
    (without,) = DefaultEngine(second_look=0).recognize([image], Options(country=country))
    assert without.plates == ()


def test_only_a_frame_where_no_plate_was_read_is_looked_at_again(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert isinstance(engine, DefaultEngine)
    sizes: list[int | None] = []
    detect = engine.detector.detect

    def counted(images: list[np.ndarray], size: int | None = None) -> list[list[Detection]]:
        sizes.append(size)
        return detect(images, size=size)

    monkeypatch.setattr(engine.detector, "detect", counted)
    near, far = street_scene("AB12CDE", seed=1, plate_width=280), street_scene("XY98ZZT", seed=1, plate_width=60)
    results = engine.recognize([near, far], Options(country="eu"))
    assert [[p.plate for p in r.plates] for r in results] == [["AB12CDE"], ["XY98ZZT"]]
    assert sizes == [None, SECOND_LOOK_SIZE]  # one second look, for the far plate's frame only
    sizes.clear()
    engine.recognize([near], Options(country="eu"))
    assert sizes == [None]
    small = cv2.resize(far, (320, 180))  # nothing more to see at a larger size
    engine.recognize([small], Options(country="eu"))
    assert sizes == [None, None]


def test_a_second_looks_reading_is_a_plate_only_when_it_fits_a_form_or_looks_like_a_registration(
    engine: Engine,
) -> None:
    # At 960 the detector is sure of badges and dealer names too: a far GWAGEN (no European form,
    # no digit), surely boxed and read by the second look, is not reported; near, boxed surely by
    # the first look, it is. A far vanity plate with a digit, BOB4U2 (no form either), is.
    far, near = street_scene("GWAGEN", seed=1, plate_width=60), street_scene("GWAGEN", seed=1, plate_width=280)
    assert isinstance(engine, DefaultEngine)
    assert engine.detector.detect([far])[0] == []
    ((sure, *_),) = engine.detector.detect([far], size=SECOND_LOOK_SIZE)
    assert sure.confidence >= SURE_DETECTION
    read = engine._read_plate(far, sure, Options(country="eu"))
    assert read is not None
    assert read.plate == "GWAGEN"
    vanity = street_scene("BOB4U2", seed=1, plate_width=60)
    far_result, near_result, vanity_result = engine.recognize([far, near, vanity], Options(country="eu"))
    assert far_result.plates == ()
    assert [plate.plate for plate in near_result.plates] == ["GWAGEN"]
    assert [(plate.plate, plate.matches_template) for plate in vanity_result.plates] == [("BOB4U2", False)]


def test_a_weak_box_that_read_no_plate_does_not_hide_the_second_looks_sure_box_on_it(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first look boxes the plate's right half weakly, which reads as no plate; the second
    # look's sure box on it reads the whole plate.
    image = street_scene("AB12CDE", seed=1, plate_width=280)
    assert isinstance(engine, DefaultEngine)
    ((whole, *_),) = engine.detector.detect([image])
    half = dataclasses.replace(whole, x1=whole.x1 + 0.5 * (whole.x2 - whole.x1), confidence=0.1)
    assert engine._read_plate(image, half, Options(country="eu")) is None
    detect = engine.detector.detect
    monkeypatch.setattr(
        engine.detector, "detect", lambda images, size=None: detect(images, size=size) if size else [[half]]
    )
    (result,) = engine.recognize([image], Options(country="eu"))
    assert [plate.plate for plate in result.plates] == ["AB12CDE"]


def test_a_plate_read_from_a_weak_box_of_part_of_it_is_read_again_from_the_second_looks_sure_box(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first look boxes the plate's right 70 % weakly, and that reads as a plate (XYZ123, a US
    # form); the second look boxes the whole plate surely, and its reading is the one reported.
    image = street_scene("7XYZ123", seed=1, plate_width=280, style="us")
    assert isinstance(engine, DefaultEngine)
    ((whole, *_),) = engine.detector.detect([image])
    part = dataclasses.replace(whole, x1=whole.x1 + 0.3 * (whole.x2 - whole.x1), confidence=0.1)
    detect = engine.detector.detect
    monkeypatch.setattr(
        engine.detector, "detect", lambda images, size=None: detect(images, size=size) if size else [[part]]
    )
    (result,) = engine.recognize([image], Options(country="us"))
    assert [(plate.plate, (plate.detection_confidence or 0) >= SURE_DETECTION) for plate in result.plates] == [
        ("7XYZ123", True)
    ]
    monkeypatch.setattr(engine, "second_look", 0)
    (first_look_only,) = engine.recognize([image], Options(country="us"))
    assert [plate.plate for plate in first_look_only.plates] == ["XYZ123"]


def test_a_line_reaches_the_reader_resized_as_pp_ocrs_own_pipeline_resizes_it(engine: Engine) -> None:
    """A far plate's line is magnified 2-4 times to the reader's 48 px: bilinearly, as PP-OCR was
    trained (bicubic's overshoot at stroke edges misread look-alikes: BENCHMARKS.md)."""
    from types import SimpleNamespace
    from typing import cast

    from rapidocr.ch_ppocr_rec.main import TextRecognizer

    assert isinstance(engine, DefaultEngine)
    assert engine.reader is not None
    line = render_plate("7XYZ123", style="us")
    line = cv2.resize(line, (100, 24), interpolation=cv2.INTER_AREA)  # a far plate's line, 48 * 100 / 24 = 200 wide
    ours = engine.reader.tensor(line)[0]
    theirs = TextRecognizer.resize_norm_img(
        cast(TextRecognizer, SimpleNamespace(rec_image_shape=[3, 48, 320])), line, 320 / 48
    )
    assert ours.shape == (3, 48, 200)
    np.testing.assert_allclose(ours, theirs[:, :, :200], atol=1e-6)


def test_a_second_look_no_larger_than_the_detector_is_refused() -> None:
    with pytest.raises(ValueError, match="second look"):
        DefaultEngine(detector_size=640, second_look=640)
    result = CliRunner().invoke(main, ["bench", "accuracy", ".", "--detector-second-look", "320"])
    assert result.exit_code != 0
    assert "detector_second_look (320) must be larger than detector_size (320)" in result.output


@pytest.mark.parametrize(("confidence", "reported"), [(0.9, ["AB12CDEF"]), (0.1, [])])
def test_a_weak_detection_is_not_a_plate_on_the_strength_of_a_far_less_likely_reading(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, confidence: float, reported: list[str]
) -> None:
    # The reader is sure of a final F: AB12CDEF fits no pattern; AB12CDE (British) would, but
    # only by dropping a character read at 0.99.
    image = street_scene("AB12CDE", seed=1, plate_width=280)
    assert isinstance(engine, DefaultEngine)
    ((found, *_),) = engine.detector.detect([image])
    weak = dataclasses.replace(found, confidence=confidence)
    monkeypatch.setattr(engine.detector, "detect", lambda images, **_: [[weak] for _ in images])
    monkeypatch.setattr(engine.reader, "read", lambda line: [[(char, 0.99)] for char in "AB12CDEF"])
    (result,) = engine.recognize([image], Options(country="eu"))
    assert [plate.plate for plate in result.plates] == reported


def test_results_are_valid_alpr_results_records(engine: Engine) -> None:
    (result,) = engine.recognize([street_scene("AB12CDE", seed=1, plate_width=280)], Options(country="eu", topn=4))
    record = alpr_results(result, epoch_ms=1_700_000_000_000, camera_id=12, agent_uid="agent", frame_number=3)
    assert Codec("alpr_results").decode(Codec("alpr_results").encode(record)) == record
    assert record["uuid"] == "agent-12-1700000000000"
    assert record["results"][0]["requested_topn"] == 4
    assert len(record["results"][0]["candidates"]) <= 4


def test_recognize_prints_openalpr_json(tmp_path: Path) -> None:
    image = tmp_path / "car.jpg"
    cv2.imwrite(str(image), street_scene("AB12CDE", seed=1, plate_width=280))
    result = CliRunner().invoke(main, ["recognize", str(image), "--country", "eu", "--topn", "3"])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.output.strip().splitlines()[-1])
    assert printed["data_type"] == "alpr_results"
    assert printed["results"][0]["plate"] == "AB12CDE"
    assert "uuid" not in printed  # the web-service form: no agent fields


def test_recognize_reports_a_bad_file_and_exits_non_zero(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    result = CliRunner().invoke(main, ["recognize", str(bad)])
    assert result.exit_code == 1
    assert "bad.jpg" in result.output
    assert "Traceback" not in result.output


def test_bench_accuracy_reports_each_miss_with_its_crop_truth_and_candidates(tmp_path: Path) -> None:
    from platestream.workers.benchmark import plate_box

    bench = tmp_path / "eu"
    bench.mkdir()
    engine = DefaultEngine()
    for name, text, label in (("right", "AB12CDE", "AB12CDE"), ("wrong", "XY98ZZT", "XY98ZZA")):
        image = street_scene(text, seed=2, plate_width=280)
        cv2.imwrite(str(bench / f"{name}.png"), image)
        (read,) = engine.recognize([image], Options(country="eu"))
        x, y, width, height = (round(v) for v in plate_box(read.plates[0]))
        (bench / f"{name}.txt").write_text(f"{name}.png\t{x}\t{y}\t{width}\t{height}\t{label}\n")
    report = tmp_path / "report"
    result = CliRunner().invoke(main, ["bench", "accuracy", str(tmp_path), "--report", str(report), "--confusions"])
    assert result.exit_code == 0, result.output
    assert "eu      2      100.0%   50.0%" in result.output
    assert "confusions (truth>read): A>T 1" in result.output  # the label's last A, rendered as a T
    page = (report / "index.html").read_text()
    assert "1 plate not read right" in page
    assert "XY98ZZA" in page  # the truth
    assert "XY98ZZT" in page  # what was read
    assert "AB12CDE" not in page  # a plate read right is not listed
    crops = list(report.glob("*.jpg"))
    assert len(crops) == 1
    crop = cv2.imread(str(crops[0]))
    assert crop is not None
    assert crop.shape[1] < 1280  # the plate's surroundings, not the whole frame


def test_a_step_pp_ocr_reads_as_a_separator_holds_no_plate_character(engine: Engine) -> None:
    """PP-OCR reads the gap, emblem or state mark between a plate's groups as a hyphen or a space
    (Texas' silhouette in SH0R7X): narrowed to the plate's characters, such a step is a blank, not
    the character the separator's leftovers favour (the L of SH0LR7X)."""
    from platestream.workers.engine.default import ctc_alternatives
    from platestream.workers.engine.plate_head import dictionary

    assert isinstance(engine, DefaultEngine)
    assert engine.reader is not None
    meta = engine.reader.reader.get_modelmeta().custom_metadata_map
    characters = dictionary(meta["character"])
    steps = np.zeros((5, len(characters)), np.float32)
    read = [{"S": 0.95, "<blank>": 0.05}, {"<blank>": 1.0}, {"-": 0.9, "L": 0.06, "<blank>": 0.04}, {"<blank>": 1.0},
            {"R": 0.95, "<blank>": 0.05}]  # fmt: skip
    for step, shares in enumerate(read):
        for char, share in shares.items():
            steps[step, characters.index(char)] = share
    narrowed = engine.reader.plate_characters(steps)
    np.testing.assert_allclose(narrowed[2, 0], 0.94, atol=1e-6)
    assert [alternatives[0][0] for alternatives in ctc_alternatives(narrowed)] == ["S", "R"]


def test_the_text_detector_runs_without_its_denormal_weights(tmp_path: Path) -> None:
    """PP-OCR's text detector ships weights too small for a normal float, which Intel CPUs multiply
    on a slow path (the detector 4 times slower): the engine loads it with them set to zero, and
    the outputs are the same."""
    import onnx
    import onnxruntime as ort
    from onnx import helper, numpy_helper

    from platestream.workers.engine.models import OCR_DETECTOR, flush_denormals, flushed_model, ocr_model

    weights = np.array([1e-39, 0.5, 0.0, -2e-40, 3.0], np.float32)
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "w"], ["y"])], "tiny",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [5])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [5])],
        [numpy_helper.from_array(weights, "w")],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "tiny.onnx"
    onnx.save(model, str(path))
    session = ort.InferenceSession(flushed_model(path), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"x": np.ones(5, np.float32)})
    np.testing.assert_array_equal(out, [0.0, 0.5, 0.0, 0.0, 3.0])

    shipped = onnx.load(str(ocr_model(OCR_DETECTOR)))
    assert flush_denormals(shipped) > 100_000  # the rapidocr wheel's detector has them
    flushed = flushed_model(ocr_model(OCR_DETECTOR))
    assert flush_denormals(onnx.load_from_string(flushed)) == 0
    crop = cv2.resize(render_plate("7XYZ123", style="us"), (224, 128)).astype(np.float32).transpose(2, 0, 1)[None]
    tensor = (crop / 255.0 - 0.5) / 0.5
    original = ort.InferenceSession(str(ocr_model(OCR_DETECTOR)), providers=["CPUExecutionProvider"])
    loaded = ort.InferenceSession(flushed, providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(loaded.run(None, {"x": tensor})[0], original.run(None, {"x": tensor})[0], atol=1e-6)
