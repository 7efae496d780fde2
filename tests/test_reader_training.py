"""The plate reader the project trains: its renderer, a short training that learns and exports a
model the engine runs, and the checks on the model file that a user relies on."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from platestream.training.render import REGIONS, Assets, render_sample
from platestream.workers.engine import Options
from platestream.workers.engine.reader import MODEL_FILE, MODEL_SHA256, PlateReader, ReaderModelError, verify
from platestream.workers.engine.templates import regions_for, shape

jax = pytest.importorskip("jax", reason="the train extra (pip install 'platestream[train]') is not installed")


@pytest.fixture(scope="module")
def assets() -> Assets:
    return Assets.find()  # fonts installed by scripts/ensure-system.sh; no blank plates needed


@pytest.mark.parametrize("region", REGIONS)
def test_rendered_plates_carry_a_form_of_their_region_and_the_box_of_their_characters(
    assets: Assets, region: str
) -> None:
    rng = np.random.default_rng(7)
    forms = {form for forms in regions_for(region).values() for form in forms}
    for _ in range(20):
        sample = render_sample(region, assets, rng)
        assert re.fullmatch(r"[A-Z0-9]{2,10}", sample.text)
        if region != "us":  # US plates include vanity texts
            assert shape(sample.text) in forms
        x1, y1, x2, y2 = sample.box
        assert 0 <= x1 < x2 <= 1 and 0 <= y1 < y2 <= 1
        assert (x2 - x1) > 0.3  # the registration spans much of the crop's width
        assert sample.image.ndim == 3 and sample.image.shape[2] == 3 and min(sample.image.shape[:2]) >= 8


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
    recipe = Recipe(steps=30, batch=16, synthetic=64, real_views=2, warmup=5, learning_rate=3e-3)
    out = tmp_path / "run"
    metrics = train_reader(crops, out, recipe, assets=assets, workers=1, eval_every=1000, checkpoint_every=10)
    losses = [loss for _, loss in metrics["loss_curve"]]
    assert len(losses) >= 3 and losses[-1] < losses[0] - 0.3  # it learns (at least where the pads are)
    model = out / "plate-reader.onnx"
    assert metrics["sha256"] == hashlib.sha256(model.read_bytes()).hexdigest()
    assert json.loads((out / "metrics.json").read_text())["recipe"]["steps"] == 30

    reader = PlateReader(threads=1, providers=["CPUExecutionProvider"], path=model, sha256=metrics["sha256"])
    assert (reader.height, reader.width, reader.alphabet) == (64, 128, "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ")
    engine = DefaultEngine(reader_model=model, reader_sha256=metrics["sha256"])
    (result,) = engine.recognize([street_scene("AB12CDE", seed=1, plate_width=280)], Options(country="eu", topn=5))
    # A model this young reads nonsense, but the engine runs it end to end and reports in form.
    for plate in result.plates:
        assert len(plate.candidates) <= 5
        assert len(plate.coordinates) == 4

    # resume: a finished run's checkpoint exports again without rendering anything
    again = train_reader(crops, out, recipe, assets=assets, resume=True, workers=1)
    assert again["sha256"] == metrics["sha256"]


def test_a_missing_or_changed_model_file_is_refused_with_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ReaderModelError, match="is missing: reinstall platestream"):
        verify(tmp_path / "plate-reader.onnx", MODEL_SHA256)
    changed = tmp_path / "changed.onnx"
    changed.write_bytes(MODEL_FILE.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(ReaderModelError, match=r"has SHA-256 [0-9a-f]{64}, expected " + MODEL_SHA256):
        verify(changed, MODEL_SHA256)
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a model")
    digest = hashlib.sha256(b"not a model").hexdigest()
    with pytest.raises(ReaderModelError, match="ONNX Runtime cannot load"):
        PlateReader(threads=1, providers=["CPUExecutionProvider"], path=garbage, sha256=digest)


def test_the_shipped_model_matches_its_pinned_checksum() -> None:
    assert hashlib.sha256(MODEL_FILE.read_bytes()).hexdigest() == MODEL_SHA256
