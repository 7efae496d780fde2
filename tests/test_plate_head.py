"""The plate head the project trained and ships on PP-OCR's reader: the engine (reader
`ppocr-head`) reads rendered plates of each region with it, its file is checked before it is used, and its ONNX graph
computes what the training computed."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from platestream.training.render import REGIONS, Assets
from platestream.workers.engine.default import ALPHABET, DefaultEngine
from platestream.workers.engine.models import OCR_READER, ocr_model
from platestream.workers.engine.plate_head import (
    HEAD_FILE,
    HEAD_SHA256,
    US_HEAD_FILE,
    US_HEAD_SHA256,
    HeadModelError,
    join,
    verify,
)
from tests.rendered_reads import read_rendered

VIEWS: list[dict[str, Any]] = [
    {"plate_width": 240},
    {"plate_width": 220, "tilt_degrees": 7.0},
    {"plate_width": 260, "blur": 1, "noise": 6.0},
    {"plate_width": 150},  # small: a far plate
]


@pytest.fixture(scope="module")
def assets() -> Assets:
    return Assets.find()  # fonts installed by scripts/ensure-system.sh


@pytest.fixture(scope="module")
def engine() -> DefaultEngine:
    return DefaultEngine(reader="ppocr-head")


@pytest.mark.parametrize("region", REGIONS)
def test_the_engine_reads_rendered_plates_of_each_region_with_the_shipped_head(
    engine: DefaultEngine, assets: Assets, region: str
) -> None:
    assert engine.reader is not None
    assert engine.reader.head is not None
    first, among = read_rendered(engine, assets, region, VIEWS, seed=31)
    # 12 plates: a head joined to the wrong tensor or with its weights misplaced reads none
    assert first >= 8, f"{region}: {first} of 12 read exactly"
    assert among >= 10, f"{region}: the truth among the candidates for {among} of 12"


def test_the_shipped_heads_match_their_pinned_checksums() -> None:
    assert hashlib.sha256(HEAD_FILE.read_bytes()).hexdigest() == HEAD_SHA256
    assert hashlib.sha256(US_HEAD_FILE.read_bytes()).hexdigest() == US_HEAD_SHA256


def test_us_plates_are_read_with_the_us_head_and_other_regions_with_the_shipped_one(
    engine: DefaultEngine, assets: Assets, monkeypatch: pytest.MonkeyPatch
) -> None:
    from platestream.training.render import PLATE_MAKERS, plate_text
    from platestream.workers.engine.base import Options
    from platestream.workers.synthetic import street_scene

    us = engine.region_readers["us"]
    assert us.head is not None
    assert engine.reader is not None
    # the US head tunes PP-OCR's whole reader and reads alone; the others mix it with PP-OCR's
    assert (us.head.mix, us.head.ppocr_output) == (0.0, None)
    assert us.detector is engine.reader.detector  # one text-line detector for both
    read_by: list[str] = []

    def recording(name: str, read: Callable[..., Any]) -> Callable[..., Any]:
        def read_line(*args: Any) -> Any:
            read_by.append(name)
            return read(*args)

        return read_line

    monkeypatch.setattr(us, "read_line", recording("us", us.read_line))
    monkeypatch.setattr(engine.reader, "read_line", recording("shipped", engine.reader.read_line))
    rng = np.random.default_rng(2)
    for region in REGIONS:
        text, splits = plate_text(region, rng)
        scene = street_scene("", seed=3, plate=PLATE_MAKERS[region](text, splits, assets, rng)[0], plate_width=240)
        read_by.clear()
        (result,) = engine.recognize([scene], Options(country=region))
        assert [plate.plate for plate in result.plates] == [text]
        assert set(read_by) == {"us" if region == "us" else "shipped"}, region
    # a trained head given to the engine reads every region
    trained = DefaultEngine(reader="ppocr-head", reader_model=HEAD_FILE, reader_sha256=HEAD_SHA256)
    assert trained.region_readers == {}


def test_a_changed_us_head_is_refused_when_the_engine_starts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from platestream.workers.engine import default

    changed = tmp_path / "plate-head-us.onnx"
    changed.write_bytes(US_HEAD_FILE.read_bytes()[:-10] + b"0123456789")
    monkeypatch.setattr(default, "REGION_HEADS", {"us": (changed, US_HEAD_SHA256)})
    with pytest.raises(HeadModelError, match=r"has SHA-256 [0-9a-f]{64}, expected " + US_HEAD_SHA256):
        DefaultEngine()
    monkeypatch.setattr(default, "REGION_HEADS", {"us": (tmp_path / "gone.onnx", US_HEAD_SHA256)})
    with pytest.raises(HeadModelError, match="is missing: reinstall platestream"):
        DefaultEngine()


def test_a_missing_changed_or_unfit_head_is_refused_with_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(HeadModelError, match="is missing: reinstall platestream"):
        verify(tmp_path / "plate-head.onnx", HEAD_SHA256)
    changed = tmp_path / "changed.onnx"
    changed.write_bytes(HEAD_FILE.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(HeadModelError, match=r"has SHA-256 [0-9a-f]{64}, expected " + HEAD_SHA256):
        DefaultEngine(reader="ppocr-head", reader_model=changed)
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a model")
    with pytest.raises(HeadModelError, match="is not an ONNX model"):
        join(ocr_model(OCR_READER), garbage, hashlib.sha256(b"not a model").hexdigest())


def test_a_head_for_another_alphabet_is_refused(tmp_path: Path) -> None:
    from platestream.training.head import to_onnx

    rng = np.random.default_rng(0)
    params = {"w1": rng.normal(size=(360, 8)), "b1": np.zeros(8), "w2": rng.normal(size=(8, 37)), "b2": np.zeros(37)}
    model = to_onnx(params, mix=0.5).replace(ALPHABET.encode(), b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXY-")
    path = tmp_path / "other.onnx"
    path.write_bytes(model)
    with pytest.raises(HeadModelError, match="the plate head reads '0123456789ABCDEFGHIJKLMNOPQRSTUVWXY-'"):
        DefaultEngine(reader="ppocr-head", reader_model=path, reader_sha256=hashlib.sha256(model).hexdigest())


def test_the_shipped_head_is_mixed_with_ppocr_as_a_product_of_experts(engine: DefaultEngine) -> None:
    assert engine.reader is not None
    assert engine.reader.head is not None
    assert (engine.reader.head.mixing, engine.reader.head.mix) == ("geometric", 0.6)
    default = DefaultEngine()  # the default reader is this one
    assert default.reader is not None
    assert default.reader.head is not None


def test_pp_ocrs_last_layer_narrowed_to_the_plates_classes_reads_as_the_whole_layer(
    engine: DefaultEngine, assets: Assets, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The engine computes PP-OCR's last layer for the blank, the separators and the plate's
    characters alone (a tenth of its 18,710 classes): the head's mix renormalises PP-OCR over the
    plate's classes, so each line reads as with the whole layer."""
    import functools

    from platestream.training.render import render_sample
    from platestream.workers.engine import default

    assert engine.reader is not None
    assert engine.reader.head is not None
    assert 100 < len(engine.reader.head.characters) < 3000
    monkeypatch.setattr(default, "join", functools.partial(join, narrow=False))
    whole = default.TextReader(threads=1, providers=["CPUExecutionProvider"], head=(HEAD_FILE, HEAD_SHA256))
    assert whole.head is not None
    assert len(whole.head.characters) == 18_710
    rng = np.random.default_rng(5)
    for region in REGIONS:
        sample = render_sample(region, assets, rng)
        _, line = engine.reader.registration_line(sample.image)
        narrowed, full = engine.reader.read(line), whole.read(line)
        assert len(narrowed) >= 5, f"{region}: {sample.text} read as {len(narrowed)} characters"
        assert [[char for char, _ in position] for position in narrowed] == [[c for c, _ in p] for p in full]
        np.testing.assert_allclose([[p for _, p in position] for position in narrowed],
                                   [[p for _, p in position] for position in full], atol=1e-4)  # fmt: skip


def test_a_reader_without_the_dictionary_the_head_reads_is_refused(tmp_path: Path) -> None:
    """The engine narrows PP-OCR's output to the plate's characters by their names in the reader's
    metadata: a reader that lists none (another export, another version) is refused, saying so."""
    import onnx

    model = onnx.load(str(ocr_model(OCR_READER)))
    kept = [entry for entry in model.metadata_props if entry.key != "character"]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    reader = tmp_path / "reader.onnx"
    onnx.save(model, str(reader))
    with pytest.raises(HeadModelError, match="lists no dictionary with the plate head's characters"):
        join(reader, HEAD_FILE, HEAD_SHA256)


def test_geometric_mixing_keeps_what_both_readers_find_likely_and_drops_what_either_rules_out() -> None:
    from platestream.workers.engine.plate_head import mix_distributions

    # classes: blank, "4", "L", "A"; PP-OCR's distribution also holds another script's character
    head = np.array([[0.0, 0.5, 0.01, 0.49]], np.float32)  # all but rules L out
    ppocr = np.array([[0.0, 0.2, 0.8, 0.0]], np.float32) * 0.9  # rules A out, 10 % elsewhere
    mixed = mix_distributions(head, ppocr, 0.6, "geometric")
    assert mixed.sum() == pytest.approx(1.0)
    assert mixed[0].argmax() == 1  # the one both allow
    linear = mix_distributions(head, ppocr, 0.6, "linear")
    assert linear[0].argmax() == 2  # adding them keeps PP-OCR's L, which the head ruled out
    assert linear.sum() == pytest.approx(1.0)


def test_a_head_mixed_by_a_rule_the_engine_does_not_know_is_refused(tmp_path: Path) -> None:
    from platestream.training.head import to_onnx

    rng = np.random.default_rng(0)
    params = {"w1": rng.normal(size=(360, 8)), "b1": np.zeros(8), "w2": rng.normal(size=(8, 37)), "b2": np.zeros(37)}
    model = to_onnx(params, mix=0.5, mixing="harmonic")
    path = tmp_path / "other.onnx"
    path.write_bytes(model)
    with pytest.raises(HeadModelError, match="mixes 'harmonic', which this engine does not know"):
        join(ocr_model(OCR_READER), path, hashlib.sha256(model).hexdigest())


def test_a_training_started_from_the_shipped_head_starts_from_its_very_numbers(tmp_path: Path) -> None:
    """`train head --init-head`: the shipped head's weights read back as training holds them and
    exported again compute what the shipped head computes, for a training of the head alone or of
    the whole reader; no head is refused."""
    from platestream.training.head import head_weights, to_onnx, trunk_weights
    from platestream.training.train import TrainingError
    from platestream.workers.engine.models import onnx_session

    weights = head_weights(HEAD_FILE)
    assert weights["w1"].shape == (360, 256)
    features = np.random.default_rng(4).normal(size=(2, 11, 120)).astype(np.float32)
    again = onnx_session(to_onnx(weights, mix=0.6, mixing="geometric"), 1, ["CPUExecutionProvider"])
    shipped = onnx_session(str(HEAD_FILE), 1, ["CPUExecutionProvider"])
    np.testing.assert_allclose(again.run(None, {"features": features})[0],
                               shipped.run(None, {"features": features})[0], atol=1e-6)  # fmt: skip

    with pytest.raises(TrainingError, match="cannot start from the plate head"):
        head_weights(tmp_path / "missing.onnx")
    # a last-layer head starts a whole-reader training too: its own weights, PP-OCR's for the rest
    for key, value in head_weights(HEAD_FILE, "whole").items():
        np.testing.assert_array_equal(value, weights[key])
    assert trunk_weights(HEAD_FILE, "whole") is None


def test_a_training_started_from_a_whole_reader_head_starts_from_its_tuned_copy(tmp_path: Path) -> None:
    """`train head --whole --init-head`: a head that tunes PP-OCR's whole reader gives back its own
    weights and its tuned copy of the reader, which exported again compute what the head computes;
    a training of the head alone is refused that head, with the option that starts from it."""
    pytest.importorskip("jax", reason="the train extra")
    from platestream.training.head import _trunk, head_weights, to_onnx, trunk_weights
    from platestream.training.onnx_jax import with_weights
    from platestream.training.train import TrainingError
    from platestream.workers.engine.models import onnx_session

    trunk = _trunk("whole")
    assert trunk is not None
    rng = np.random.default_rng(6)
    moved = {name: np.asarray(value * (1 + 0.01 * rng.normal(size=np.shape(value))), np.float32)
             for name, value in trunk.params.items()}  # fmt: skip
    path = tmp_path / "whole.onnx"
    path.write_bytes(to_onnx(head_weights(HEAD_FILE), mix=0.0, trunk=with_weights(trunk, moved)))

    tuned = trunk_weights(path, "whole")
    assert tuned is not None
    assert trunk.params.keys() <= tuned.keys()  # the reader's constants come too
    for name, value in moved.items():
        np.testing.assert_array_equal(tuned[name], value)
    again = to_onnx(
        head_weights(path, "whole"), mix=0.0, trunk=with_weights(trunk, {name: tuned[name] for name in moved})
    )
    lines = rng.uniform(-1, 1, size=(1, 3, 48, 160)).astype(np.float32)
    computed, saved = (onnx_session(model, 1, ["CPUExecutionProvider"]).run(None, {"features": lines})[0]
                       for model in (again, str(path)))  # fmt: skip
    np.testing.assert_allclose(computed, saved, atol=1e-5)
    with pytest.raises(TrainingError, match=r"it tunes PP-OCR's whole reader, this training no part of PP-OCR's "
                                            r"reader; train with --whole to start from it"):  # fmt: skip
        head_weights(path)


def test_pp_ocrs_share_zero_is_chosen_where_it_reads_within_the_margin_of_the_best() -> None:
    """The head alone (share 0) costs the engine less time than a mix: it is chosen where its
    held-out reads are within SHARE_ZERO_MARGIN points of the best share's, and not further."""
    from platestream.training.head import SHARE_ZERO_MARGIN, choose_mix

    def reads(us: float) -> dict[str, float]:
        return {"us": us, "eu": 90.0, "br": 70.0}

    close = {("geometric", 0.0): reads(88.5), ("geometric", 0.25): reads(88.5 + SHARE_ZERO_MARGIN),
             ("linear", 0.25): reads(80.0)}  # fmt: skip
    assert choose_mix(close) == ("geometric", 0.0)
    far = {**close, ("geometric", 0.25): reads(88.5 + SHARE_ZERO_MARGIN + 0.2)}
    assert choose_mix(far) == ("geometric", 0.25)
    assert choose_mix({("linear", 0.4): reads(80.0), ("geometric", 0.6): reads(80.0)}) == ("geometric", 0.6)


def test_the_exported_head_computes_what_training_computes() -> None:
    """to_onnx turns the neighbour-concatenating layer into a convolution: same numbers."""
    from platestream.training.head import to_onnx
    from platestream.workers.engine.models import onnx_session

    rng = np.random.default_rng(1)
    params = {"w1": rng.normal(size=(360, 16)) * 0.1, "b1": rng.normal(size=16) * 0.1,
              "w2": rng.normal(size=(16, 37)) * 0.3, "b2": rng.normal(size=37) * 0.1}  # fmt: skip
    features = rng.normal(size=(2, 9, 120)).astype(np.float32)
    previous = np.pad(features, ((0, 0), (1, 0), (0, 0)))[:, :-1]
    following = np.pad(features, ((0, 0), (0, 1), (0, 0)))[:, 1:]
    hidden = np.maximum(np.concatenate([previous, features, following], -1) @ params["w1"] + params["b1"], 0)
    logits = hidden @ params["w2"] + params["b2"]
    expected = np.exp(logits - logits.max(-1, keepdims=True))
    expected /= expected.sum(-1, keepdims=True)
    session = onnx_session(to_onnx(params, mix=0.25), 1, ["CPUExecutionProvider"])
    (got,) = session.run(None, {"features": features})
    np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize("part", ["neck", "whole"])
def test_a_head_with_a_tuned_part_of_the_reader_computes_in_the_engine_what_training_computes(
    tmp_path: Path, part: str
) -> None:
    """The tuned copy of PP-OCR's neck, or of its whole reader, runs as JAX in training and as ONNX
    joined to PP-OCR's reader in the engine: from the same image line, the same plate probabilities,
    and PP-OCR's own output untouched."""
    pytest.importorskip("jax", reason="the train extra")
    import jax

    from platestream.training.head import _trunk, to_onnx
    from platestream.training.onnx_jax import with_weights
    from platestream.workers.engine.models import onnx_session

    rng = np.random.default_rng(2)
    trunk = _trunk(part)
    assert trunk is not None
    tuned = {name: value * (1 + 0.05 * rng.normal(size=value.shape)).astype(np.float32)
             for name, value in trunk.params.items()}  # fmt: skip
    params = {"w1": rng.normal(size=(360, 16)) * 0.1, "b1": rng.normal(size=16) * 0.1,
              "w2": rng.normal(size=(16, 37)) * 0.3, "b2": rng.normal(size=37) * 0.1}  # fmt: skip
    model = to_onnx(params, mix=0.25, trunk=with_weights(trunk, tuned))
    path = tmp_path / "plate-head.onnx"
    path.write_bytes(model)
    joined = join(ocr_model(OCR_READER), path, hashlib.sha256(model).hexdigest(), narrow=False)
    session = onnx_session(joined.model, 1, ["CPUExecutionProvider"])
    line = rng.uniform(-1, 1, size=(1, 3, 48, 176)).astype(np.float32)
    outputs = dict(zip([o.name for o in session.get_outputs()], session.run(None, {"x": line}), strict=True))

    import onnx

    reader = onnx.load(str(ocr_model(OCR_READER)))
    reader.graph.output.append(onnx.helper.make_tensor_value_info(trunk.input_name, onnx.TensorProto.FLOAT, None))
    trunk_input = line if part == "whole" else (
        onnx_session(reader.SerializeToString(), 1, ["CPUExecutionProvider"]).run(None, {"x": line})[-1])  # fmt: skip
    features = np.asarray(trunk.apply(tuned, trunk_input))
    previous = np.pad(features, ((0, 0), (1, 0), (0, 0)))[:, :-1]
    following = np.pad(features, ((0, 0), (0, 1), (0, 0)))[:, 1:]
    hidden = np.maximum(np.concatenate([previous, features, following], -1) @ params["w1"] + params["b1"], 0)
    expected = np.asarray(jax.nn.softmax(hidden @ params["w2"] + params["b2"], -1))
    np.testing.assert_allclose(outputs[joined.head_output], expected, atol=1e-4)
    # PP-OCR's own output is untouched by the copy
    (original,) = onnx_session(str(ocr_model(OCR_READER)), 1, ["CPUExecutionProvider"]).run(None, {"x": line})
    np.testing.assert_allclose(outputs[joined.ppocr_output], original, atol=1e-6)


def test_a_head_taking_nothing_from_ppocr_runs_without_ppocrs_own_reader(tmp_path: Path) -> None:
    """At PP-OCR's share 0 the engine reads with the head alone: a head carrying a tuned copy of the
    whole reader runs that copy and none of PP-OCR's own reader (a second reader's cost), and reads
    a line as the head's output says."""
    pytest.importorskip("jax", reason="the train extra")
    import onnx

    from platestream.training.head import _trunk, to_onnx
    from platestream.training.onnx_jax import with_weights
    from platestream.workers.engine.default import TextReader, ctc_alternatives
    from platestream.workers.engine.models import onnx_session

    rng = np.random.default_rng(3)
    trunk = _trunk("whole")
    assert trunk is not None
    tuned = with_weights(trunk, {name: value * (1 + 0.05 * rng.normal(size=value.shape)).astype(np.float32)
                                 for name, value in trunk.params.items()})  # fmt: skip
    params = {"w1": rng.normal(size=(360, 16)) * 0.1, "b1": rng.normal(size=16) * 0.1,
              "w2": rng.normal(size=(16, 37)) * 0.3, "b2": rng.normal(size=37) * 0.1}  # fmt: skip
    heads = {}
    for mix in (0.0, 0.25):
        model = to_onnx(params, mix=mix, mixing="geometric", trunk=tuned)
        heads[mix] = (tmp_path / f"head-{mix}.onnx", hashlib.sha256(model).hexdigest())
        heads[mix][0].write_bytes(model)
    mixed, alone = (join(ocr_model(OCR_READER), *heads[mix]) for mix in (0.25, 0.0))
    assert mixed.ppocr_output is not None
    assert alone.ppocr_output is None
    head_nodes = len(onnx.load(str(heads[0.0][0])).graph.node)
    assert len(onnx.load_from_string(mixed.model).graph.node) > head_nodes
    assert len(onnx.load_from_string(alone.model).graph.node) == head_nodes

    line = rng.integers(0, 255, size=(30, 140, 3), dtype=np.uint8)
    reader = TextReader(threads=1, providers=["CPUExecutionProvider"], head=heads[0.0])
    tensor = reader.tensor(line)
    (head_output,) = onnx_session(alone.model, 1, ["CPUExecutionProvider"]).run(None, {"x": tensor})
    both = onnx_session(mixed.model, 1, ["CPUExecutionProvider"]).run([mixed.head_output], {"x": tensor})
    np.testing.assert_allclose(head_output, both[0], atol=1e-6)
    assert reader.read(line) == ctc_alternatives(np.asarray(head_output[0], np.float32))


def test_weights_stored_at_half_precision_compute_what_the_float32_weights_compute() -> None:
    """`store_at_half`: a graph's weights as float16 (half the bytes), widened by casts that ONNX
    Runtime folds, compute what the float32 graph computed, to float16's rounding; a weight too
    small to matter or beyond float16's range stays float32."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from platestream.training.head import HALF_MIN_SIZE, store_at_half
    from platestream.workers.engine.models import onnx_session

    rng = np.random.default_rng(8)
    weights = {"w": rng.normal(size=(64, 64)).astype(np.float32) * 0.2,
               "big": np.full((8, 8), 1e6, np.float32),  # beyond float16's range
               "b": rng.normal(size=HALF_MIN_SIZE - 1).astype(np.float32)}  # fmt: skip
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
         helper.make_node("MatMul", ["r", "w"], ["y"])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])],
        [numpy_helper.from_array(value, name) for name, value in weights.items()],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
    model.ir_version = 7
    before = model.SerializeToString()
    assert store_at_half(model.graph) == 1  # w only: "big" overflows, "b" is too small
    onnx.checker.check_model(model)
    types = {tensor.name: tensor.data_type for tensor in model.graph.initializer}
    assert types == {"w": TensorProto.FLOAT16, "big": TensorProto.FLOAT, "b": TensorProto.FLOAT}
    after = model.SerializeToString()
    assert len(after) < 0.7 * len(before)
    line = rng.normal(size=(1, 64)).astype(np.float32)
    (wide,), (half,) = (onnx_session(m, 1, ["CPUExecutionProvider"]).run(None, {"x": line}) for m in (before, after))
    np.testing.assert_allclose(half, wide, rtol=2e-3, atol=2e-3)
    assert not np.array_equal(half, wide)  # the weights were rounded, not kept


def test_the_shipped_us_head_stores_its_tuned_reader_at_half_precision() -> None:
    """The US head's tuned copy of PP-OCR's reader is stored at half precision (6.3 MB, not 12.5),
    as `train head --whole` exports it, and a training can start from it (`--init-head`)."""
    import onnx
    from onnx import TensorProto

    model = onnx.load(str(US_HEAD_FILE))
    assert {entry.key: entry.value for entry in model.metadata_props}["weights"] == "float16"
    sizes = {TensorProto.FLOAT16: 0, TensorProto.FLOAT: 0}
    for tensor in model.graph.initializer:
        if tensor.data_type in sizes:
            sizes[tensor.data_type] += len(tensor.raw_data)
    assert sizes[TensorProto.FLOAT16] > 50 * sizes[TensorProto.FLOAT]
    assert US_HEAD_FILE.stat().st_size < 7_000_000

    from platestream.training.head import head_weights, trunk_weights

    tuned = trunk_weights(US_HEAD_FILE, "whole")
    assert tuned is not None
    assert len(tuned) > 100
    assert all(value.dtype == np.float32 for value in tuned.values())
    assert head_weights(US_HEAD_FILE, "whole")["w1"].dtype == np.float32


def test_a_whole_reader_head_exported_at_half_precision_reads_as_its_float32_export(tmp_path: Path) -> None:
    """`to_onnx(..., half=True)`, how `train head --whole` exports: the engine joins it and reads a
    line as from the float32 export (to float16's rounding), and a training started from it starts
    from its weights, widened to float32."""
    pytest.importorskip("jax", reason="the train extra")
    from platestream.training.head import _trunk, head_weights, to_onnx, trunk_weights
    from platestream.training.onnx_jax import with_weights
    from platestream.workers.engine.models import onnx_session

    rng = np.random.default_rng(9)
    trunk = _trunk("whole")
    assert trunk is not None
    moved = {name: value * (1 + 0.05 * rng.normal(size=value.shape)).astype(np.float32)
             for name, value in trunk.params.items()}  # fmt: skip
    params = {"w1": rng.normal(size=(360, 16)) * 0.1, "b1": rng.normal(size=16) * 0.1,
              "w2": rng.normal(size=(16, 37)) * 0.3, "b2": rng.normal(size=37) * 0.1}  # fmt: skip
    files = {}
    for half in (False, True):
        model = to_onnx(params, mix=0.0, trunk=with_weights(trunk, moved), half=half)
        files[half] = (tmp_path / f"head-{half}.onnx", hashlib.sha256(model).hexdigest())
        files[half][0].write_bytes(model)
    assert files[True][0].stat().st_size < 0.6 * files[False][0].stat().st_size
    line = rng.uniform(-1, 1, size=(1, 3, 48, 176)).astype(np.float32)
    wide, half = (onnx_session(join(ocr_model(OCR_READER), *files[h]).model, 1, ["CPUExecutionProvider"])
                  .run(None, {"x": line})[0] for h in (False, True))  # fmt: skip
    np.testing.assert_allclose(half, wide, atol=2e-2)  # a random line through a randomly moved reader
    assert (half.argmax(-1) == wide.argmax(-1)).mean() > 0.95

    tuned = trunk_weights(files[True][0], "whole")
    assert tuned is not None
    for name, value in moved.items():
        assert tuned[name].dtype == np.float32
        np.testing.assert_allclose(tuned[name], value, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(head_weights(files[True][0], "whole")["w1"], params["w1"], rtol=1e-3, atol=1e-4)


def test_a_head_reading_a_tensor_the_reader_lacks_is_refused(tmp_path: Path) -> None:
    import onnx

    model = onnx.load(str(HEAD_FILE))
    reads = [entry for entry in model.metadata_props if entry.key == "reads"]
    entry = reads[0] if reads else model.metadata_props.add()
    entry.key, entry.value = "reads", "no.such.tensor"
    path = tmp_path / "plate-head.onnx"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(HeadModelError, match=r"reads PP-OCR's tensor 'no\.such\.tensor', which .* does not have"):
        join(ocr_model(OCR_READER), path, hashlib.sha256(path.read_bytes()).hexdigest())


def test_a_reader_with_other_features_than_the_head_was_trained_on_is_refused(tmp_path: Path) -> None:
    """A rapidocr upgrade whose reader ends in a layer of another width: said, not a shape error."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probs"], axis=2),
        ],
        "reader",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 64])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [1, 8, 10])],
        [numpy_helper.from_array(np.zeros((64, 10), np.float32), "w")],
    )
    reader = tmp_path / "other-reader.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)]), str(reader))
    with pytest.raises(HeadModelError, match=r"reads 120 features per step, other-reader\.onnx gives 64: pin rapidocr"):
        join(reader, HEAD_FILE, HEAD_SHA256)


def test_a_trained_model_given_to_the_reader_that_runs_none_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="a trained model needs reader 'ppocr-head'"):
        DefaultEngine(reader="ppocr", reader_model=tmp_path / "plate-head.onnx")


def test_a_two_line_plate_is_cut_for_training_as_its_two_lines_joined_top_first() -> None:
    from platestream.training.head import _closeness, _Cutter
    from platestream.workers.synthetic import render_two_line_plate

    cutter = _Cutter()
    rng = np.random.default_rng(3)
    cuts = [cutter.line(render_two_line_plate("GF", "938BC"), "GF938BC", rng) for _ in range(4)]
    found = [cut for cut in cuts if cut is not None]
    assert found, "the detector found none of the scenes"
    for cut in found:
        assert len(cut.features) == len(cut.ppocr) == len(cut.neck)
        assert _closeness(cut.ppocr, "GF938BC") > 0.8  # both lines, not GF or 938BC alone (0.4-0.7)
        # the two line images side by side, as the whole reader's tuning reads them
        assert cut.image.shape[0] == 48
        assert abs(cut.image.shape[1] - 8 * len(cut.features)) <= 8


def test_a_line_tuning_the_whole_reader_is_cut_looser_or_tighter_but_keeps_its_characters() -> None:
    """Training lines of the whole reader are cut as the line finder may cut them: sides moved in
    by at most 4 % or out by at most 10 %, never the characters' middle lost; the line as cut is
    kept for the held-out reads."""
    from platestream.training.head import LINE_JITTER, Lines, _inputs, jittered_line
    from platestream.workers.synthetic import render_plate

    line = np.asarray(cv2.resize(render_plate("GWAGEN", style="us"), (212, 48)), np.uint8)
    rng = np.random.default_rng(7)
    shapes = set()
    for _ in range(50):
        cut = jittered_line(line, rng)
        height, width = cut.shape[:2]
        assert 48 * (1 - 2 * LINE_JITTER[0]) - 1 <= height <= 48 * (1 + 2 * LINE_JITTER[1]) + 1
        assert 212 * (1 - 2 * LINE_JITTER[0]) - 1 <= width <= 212 * (1 + 2 * LINE_JITTER[1]) + 1
        assert cut.dtype == np.uint8
        shapes.add(cut.shape)
        # the middle of the line, where the characters are, is still in the cut
        assert (cut[height // 2, width // 4 : 3 * width // 4] < 128).any()
    assert len(shapes) > 25  # each line cut its own way
    lines = Lines(texts=["GWAGEN"], images=[line], held_out=[True], regions=["us"])
    rows = np.array([0])
    assert np.array_equal(_inputs(lines, rows, "whole"), _inputs(lines, rows, "whole"))  # as cut, unchanged
    assert not np.array_equal(_inputs(lines, rows, "whole"), _inputs(lines, rows, "whole", rng))


def test_free_texts_for_training_run_from_all_digits_to_all_letters_in_every_length(assets: Assets) -> None:
    """`train head --free-texts`: vanity-like texts (GWAGEN) of 2-8 characters, some all letters,
    some all digits, most of no region's form, drawn on every region's plate."""
    import re

    from platestream.training.render import PLATE_MAKERS, free_text

    rng = np.random.default_rng(8)
    texts = [free_text(rng)[0] for _ in range(400)]
    assert all(re.fullmatch(r"[A-Z0-9]{2,8}", text) for text in texts)
    assert {len(text) for text in texts} == set(range(2, 9))
    assert sum(text.isalpha() for text in texts) > 40
    assert sum(text.isdigit() for text in texts) > 40
    for index in range(60):  # every length on every region's plate, with its ink inside the plate
        text, splits = free_text(rng)
        region = ("us", "eu", "br")[index % 3]
        plate, (left, top, right, bottom) = PLATE_MAKERS[region](text, splits, assets, rng)
        assert 0 <= left < right <= plate.shape[1], (region, text)
        assert 0 <= top < bottom <= plate.shape[0], (region, text)


def test_pp_ocrs_whole_reader_runs_in_training_as_onnx_runtime_runs_it() -> None:
    """Tuning the whole reader (backbone included) needs every one of its operators in JAX: from
    an image line to its 18,710 classes, the same probabilities as ONNX Runtime's."""
    pytest.importorskip("jax", reason="the train extra")
    import onnx

    from platestream.training.onnx_jax import extract
    from platestream.workers.engine.models import onnx_session

    model = onnx.load(str(ocr_model(OCR_READER)))
    whole = extract(model, "x", model.graph.output[0].name)
    line = np.random.default_rng(3).uniform(-1, 1, size=(1, 3, 48, 184)).astype(np.float32)
    (expected,) = onnx_session(str(ocr_model(OCR_READER)), 1, ["CPUExecutionProvider"]).run(None, {"x": line})
    np.testing.assert_allclose(np.asarray(whole.apply(whole.params, line)), expected, atol=1e-4)


@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER"])
@pytest.mark.parametrize("width", [7, 8])
def test_poolings_and_same_padding_run_in_training_as_onnx_runtime_runs_them(width: int, auto_pad: str) -> None:
    """SAME_UPPER padding puts an odd pixel after, SAME_LOWER before, and an average pooling that counts only the
    pixels inside the image divides its edge windows by fewer: on odd and even widths alike."""
    pytest.importorskip("jax", reason="the train extra")
    from onnx import TensorProto, helper

    from platestream.training.onnx_jax import extract
    from platestream.workers.engine.models import onnx_session

    rng = np.random.default_rng(width)
    weight = rng.normal(size=(4, 3, 3, 2)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], auto_pad=auto_pad, strides=[2, 2]),
        helper.make_node("MaxPool", ["c"], ["m"], kernel_shape=[2, 2], strides=[1, 1], auto_pad=auto_pad),
        helper.make_node("HardSigmoid", ["m"], ["h"], alpha=1 / 6, beta=0.5),
        helper.make_node(
            "AveragePool", ["h"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], count_include_pad=0
        ),
    ]
    graph = helper.make_graph(
        nodes, "pools", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 5, width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[helper.make_tensor("w", TensorProto.FLOAT, weight.shape, weight.ravel())],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = rng.normal(size=(1, 3, 5, width)).astype(np.float32)
    (expected,) = onnx_session(model.SerializeToString(), 1, ["CPUExecutionProvider"]).run(None, {"x": x})
    part = extract(model, "x", "y")
    np.testing.assert_allclose(np.asarray(part.apply(part.params, x)), expected, atol=1e-5)


def test_a_pooling_that_rounds_its_size_up_is_refused_by_the_trainer() -> None:
    pytest.importorskip("jax", reason="the train extra")
    from onnx import TensorProto, helper

    from platestream.training.onnx_jax import extract
    from platestream.training.train import TrainingError

    node = helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1)
    graph = helper.make_graph([node], "ceil", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 5, 5])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])  # fmt: skip
    with pytest.raises(TrainingError, match=r"attributes this trainer cannot run: .*MaxPool.*ceil_mode"):
        extract(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), "x", "y")
