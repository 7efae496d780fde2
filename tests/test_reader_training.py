"""Training the plate reader: a short run on a tiny rendered data set learns, checkpoints,
resumes and exports a model that ONNX Runtime loads and the engine reads with.

Needs the `train` extra (JAX); `make setup` installs it."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from platestream.training.render import Assets, render_sample
from platestream.workers.engine import Options
from platestream.workers.engine.reader import PlateReader

jax = pytest.importorskip("jax", reason="the train extra (pip install 'platestream[train]') is not installed")


@pytest.fixture(scope="module")
def assets() -> Assets:
    return Assets.find()  # fonts installed by scripts/ensure-system.sh; no blank plates needed


def _fake_crops(root: Path, assets: Assets) -> None:
    """A data set in the plate-crops layout, its 'real' crops rendered."""
    rng = np.random.default_rng(3)
    for region, folder in (("us", "us"), ("br", "br")):
        (root / folder).mkdir(parents=True)
        rows = ["file\ttext"]
        for index in range(12):
            sample = render_sample(region, assets, rng)
            name = f"{region}{index}.png"
            cv2.imwrite(str(root / folder / name), sample.image)
            rows.append(f"{name}\t{sample.text}")
        (root / folder / "labels.tsv").write_text("\n".join(rows) + "\n")


def test_a_short_training_lowers_the_loss_and_exports_a_model_the_engine_reads_with(
    tmp_path: Path, assets: Assets
) -> None:
    from platestream.training.train import Recipe, train_reader
    from platestream.workers.engine.default import DefaultEngine
    from platestream.workers.synthetic import street_scene

    crops = tmp_path / "crops"
    _fake_crops(crops, assets)
    recipe = Recipe(steps=30, batch=16, synthetic=64, real_views=2, scene_views=1, warmup=5, learning_rate=3e-3)
    out = tmp_path / "run"
    metrics = train_reader(crops, out, recipe, assets=assets, workers=1, eval_every=1000, checkpoint_every=10)
    # two augmented views of each training crop, and one more where the detector found it in its scene
    assert 2 * metrics["training_crops"] < metrics["real_views"] <= 3 * metrics["training_crops"]
    losses = [loss for _, loss in metrics["loss_curve"]]
    assert len(losses) >= 3
    assert losses[-1] < losses[0] - 0.3
    model = out / "plate-reader.onnx"
    assert metrics["sha256"] == hashlib.sha256(model.read_bytes()).hexdigest()
    assert json.loads((out / "metrics.json").read_text())["recipe"]["steps"] == 30

    reader = PlateReader(threads=1, providers=["CPUExecutionProvider"], path=model, sha256=metrics["sha256"])
    assert (reader.height, reader.width, reader.alphabet) == (64, 128, "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ")
    engine = DefaultEngine(reader="platestream", reader_model=model, reader_sha256=metrics["sha256"])
    (result,) = engine.recognize([street_scene("AB12CDE", seed=1, plate_width=280)], Options(country="eu", topn=5))
    # A model this young reads nonsense, but the engine runs it end to end and reports in form.
    for plate in result.plates:
        assert len(plate.candidates) <= 5
        assert len(plate.coordinates) == 4

    # resume: a finished run's checkpoint exports again without rendering anything
    again = train_reader(crops, out, recipe, assets=assets, resume=True, workers=1)
    assert again["sha256"] == metrics["sha256"]


def test_training_without_labelled_crops_says_what_it_expected(tmp_path: Path, assets: Assets) -> None:
    from platestream.training.train import Recipe, TrainingError, train_reader

    with pytest.raises(TrainingError, match=r"no labelled crops under .* \(expected us/labels.tsv"):
        train_reader(tmp_path, tmp_path / "run", Recipe(steps=1), assets=assets)


def test_a_short_head_training_lowers_the_loss_and_exports_a_head_the_engine_reads_with(
    tmp_path: Path, assets: Assets
) -> None:
    from platestream.training.head import HeadRecipe, train_head
    from platestream.workers.engine.default import DefaultEngine
    from platestream.workers.synthetic import street_scene

    crops = tmp_path / "crops"
    _fake_crops(crops, assets)
    recipe = HeadRecipe(views=2, rendered=6, steps=60, batch=16)
    out = tmp_path / "head"
    metrics = train_head(crops, out, recipe, assets=assets, workers=1)
    losses = [loss for _, loss in metrics["loss_curve"]]
    assert len(losses) == 6
    assert losses[-1] < losses[0] - 1.0
    assert metrics["training_lines"] >= 20  # the detector found most of the mounted plates
    model = out / "plate-head.onnx"
    assert metrics["sha256"] == hashlib.sha256(model.read_bytes()).hexdigest()
    assert json.loads((out / "metrics.json").read_text())["mix"] == metrics["mix"]

    engine = DefaultEngine(reader="ppocr-head", reader_model=model, reader_sha256=metrics["sha256"])
    assert engine.reader is not None
    assert engine.reader.head is not None
    assert (engine.reader.head.mixing, engine.reader.head.mix) == (metrics["mixing"], metrics["mix"])
    (result,) = engine.recognize([street_scene("AB12CDE", seed=1, plate_width=280)], Options(country="eu", topn=5))
    for plate in result.plates:  # a head this young reads badly, but the engine runs it end to end
        assert len(plate.candidates) <= 5

    # the cut lines are cached: a second run with the same data recipe only trains
    said: list[str] = []
    train_head(crops, out, recipe, assets=assets, workers=1, progress=said.append)
    assert any("plate lines from" in line for line in said)

    # with PP-OCR's neck tuned too: the same cached lines, a head carrying the neck's copy
    tuned = train_head(crops, out, dataclasses.replace(recipe, neck=True, warmup=20), assets=assets, workers=1)
    tuned_losses = [loss for _, loss in tuned["loss_curve"]]
    assert tuned_losses[-1] < tuned_losses[0] - 1.0
    engine = DefaultEngine(reader="ppocr-head", reader_model=model, reader_sha256=tuned["sha256"])
    (result,) = engine.recognize([street_scene("AB12CDE", seed=1, plate_width=280)], Options(country="eu", topn=5))
    for plate in result.plates:
        assert len(plate.candidates) <= 5


def test_a_short_training_with_the_whole_reader_tuned_exports_a_head_the_engine_reads_with(
    tmp_path: Path, assets: Assets
) -> None:
    """The GPU recipe's path (`train head --whole`), a few small steps on the CPU: lines are cut
    with their images, the whole reader moves after the warm-up, and the head carrying its tuned
    copy is what the engine reads with."""
    from platestream.training.head import HeadRecipe, train_head
    from platestream.workers.engine.default import DefaultEngine
    from platestream.workers.synthetic import street_scene

    crops = tmp_path / "crops"
    _fake_crops(crops, assets)
    recipe = HeadRecipe(views=1, rendered=6, steps=30, batch=4, warmup=10, whole=True)
    out = tmp_path / "head"
    metrics = train_head(crops, out, recipe, assets=assets, workers=1)
    losses = [loss for _, loss in metrics["loss_curve"]]
    assert len(losses) == 3
    assert losses[-1] < losses[0] - 1.0
    assert metrics["recipe"]["whole"] is True
    model = out / "plate-head.onnx"
    assert metrics["sha256"] == hashlib.sha256(model.read_bytes()).hexdigest()
    import onnx
    from onnx import numpy_helper

    from platestream.workers.engine.models import OCR_READER, ocr_model

    head = onnx.load(str(model))
    assert {entry.key: entry.value for entry in head.metadata_props}["reads"] == "x"
    original = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(ocr_model(OCR_READER))).graph.initializer}
    copies = {t.name.removeprefix("reader/"): numpy_helper.to_array(t) for t in head.graph.initializer
              if t.name.startswith("reader/")}  # fmt: skip
    assert copies.keys() <= original.keys()
    assert len(copies) > 100  # the whole reader's weights, backbone included
    assert sum(not np.array_equal(copies[name], original[name]) for name in copies) > 100  # and they moved
    engine = DefaultEngine(reader="ppocr-head", reader_model=model, reader_sha256=metrics["sha256"])
    assert engine.reader is not None
    assert engine.reader.head is not None
    assert engine.reader.head.mix == metrics["mix"]
    (result,) = engine.recognize([street_scene("AB12CDE", seed=1, plate_width=280)], Options(country="eu", topn=5))
    for plate in result.plates:
        assert len(plate.candidates) <= 5


@pytest.mark.parametrize("command", ["reader", "head"])
def test_training_on_a_folder_without_the_data_set_says_what_it_expected(tmp_path: Path, command: str) -> None:
    from click.testing import CliRunner

    from platestream.cli import main

    result = CliRunner().invoke(main, ["train", command, "--crops", str(tmp_path), "--out", str(tmp_path / "run")])
    assert result.exit_code == 1
    assert f"Error: no labelled crops under {tmp_path} (expected us/labels.tsv" in result.output


def test_a_graph_part_with_an_operator_the_trainer_cannot_run_is_refused_by_name() -> None:
    from onnx import TensorProto, helper

    from platestream.training.onnx_jax import extract
    from platestream.training.train import TrainingError

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Tanh", ["a"], ["y"])],
        "part",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
    with pytest.raises(TrainingError, match=r"operators this trainer cannot run: \['Tanh'\]"):
        extract(model, "x", "y")


def test_a_head_to_start_from_that_cannot_be_read_is_refused_before_any_cutting(tmp_path: Path) -> None:
    from platestream.training.head import HeadRecipe, train_head
    from platestream.training.train import TrainingError

    recipe = HeadRecipe(init_head=str(tmp_path / "missing.onnx"))
    with pytest.raises(TrainingError, match=r"cannot start from the plate head .*missing\.onnx"):
        train_head(tmp_path, tmp_path / "run", recipe)  # no data set here either: the head is read first
    assert not (tmp_path / "run").exists()
