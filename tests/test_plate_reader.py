"""The plate reader the project trained and ships: it reads rendered plates of each region through
the whole engine, and its model file is checked before it is used. The renderer that made its
training data draws plates in their regions' forms."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from platestream.training.render import REGIONS, Assets, render_sample
from platestream.workers.engine.default import DefaultEngine
from platestream.workers.engine.reader import MODEL_FILE, MODEL_SHA256, PlateReader, ReaderModelError, verify
from platestream.workers.engine.templates import regions_for, shape
from tests.rendered_reads import read_rendered


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
        assert 0 <= x1 < x2 <= 1
        assert 0 <= y1 < y2 <= 1
        assert (x2 - x1) > 0.2  # the registration spans much of the crop's width (less on two-line plates)
        assert sample.image.ndim == 3
        assert sample.image.shape[2] == 3
        assert min(sample.image.shape[:2]) >= 8


@pytest.fixture(scope="module")
def trained_reader_engine() -> DefaultEngine:
    return DefaultEngine(reader="platestream")


VIEWS: list[dict[str, Any]] = [
    {"plate_width": 300},
    {"plate_width": 300, "tilt_degrees": 7.0},
    {"plate_width": 300, "blur": 1, "noise": 6.0},
    {"plate_width": 170},  # small: a far plate
]


@pytest.mark.parametrize("region", REGIONS)
def test_the_shipped_reader_reads_rendered_plates_of_each_region_through_the_whole_engine(
    trained_reader_engine: DefaultEngine, assets: Assets, region: str
) -> None:
    first, among = read_rendered(trained_reader_engine, assets, region, VIEWS, seed=21)
    # 12 plates: a broken input (colour order, scaling, crop) reads none of them
    assert first >= 7, f"{region}: {first} of 12 read exactly"
    assert among >= 9, f"{region}: the truth among the candidates for {among} of 12"


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


def test_rendering_without_the_fonts_says_which_packages_to_install(tmp_path: Path) -> None:
    from platestream.training.render import AssetError

    with pytest.raises(AssetError, match="install fonts-opendin fonts-bebas-neue fonts-roadgeek"):
        Assets.find(font_roots=[tmp_path])


def test_pack_carries_the_crops_fonts_and_plate_detector_to_a_machine_without_them(
    tmp_path: Path, assets: Assets
) -> None:
    import cv2
    from click.testing import CliRunner

    from platestream.cli import main

    root = tmp_path / "plate-crops"
    (root / "us").mkdir(parents=True)
    (root / "us-blank-plates").mkdir()
    sample = render_sample("us", assets, np.random.default_rng(5))
    cv2.imwrite(str(root / "us" / "one.png"), sample.image)
    (root / "us" / "labels.tsv").write_text(f"file\ttext\none.png\t{sample.text}\n")
    out = tmp_path / "gpu"
    result = CliRunner().invoke(main, ["train", "pack", "--crops", str(root), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "packed 1 crops" in result.output
    assert (out / "crops" / "us" / "one.jpg").exists()
    assert any((out / "fonts").rglob("*.ttf"))
    detector = sorted(p.name for p in (out / "models").iterdir())
    assert len(detector) == 2
    assert detector[0].endswith(".json")
    assert detector[1].endswith(".onnx")
