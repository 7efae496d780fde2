"""The OpenALPR engine against the real library: plates it reads, the adapter's options, batches,
and one clear error for each thing a user can get wrong.

The tests that need the native library skip where it is not installed (as in CI), with the reason.
To run them, build OpenALPR and its Python binding (README, "The OpenALPR engine") and point
PLATESTREAM_OPENALPR_CONFIG and PLATESTREAM_OPENALPR_RUNTIME_DATA at them.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import re
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from platestream.settings import EngineSettings
from platestream.workers.engine import Engine, Image, Options
from platestream.workers.engine.openalpr import NATIVE_LIBRARY, OpenAlprEngine, OpenAlprError
from tests.factories import REPO

PLATES = REPO / "tests" / "data" / "openalpr"
DEFAULTS = EngineSettings.model_fields
CONFIG = os.environ.get("PLATESTREAM_OPENALPR_CONFIG", str(DEFAULTS["openalpr_config"].default))
RUNTIME_DATA = os.environ.get("PLATESTREAM_OPENALPR_RUNTIME_DATA", str(DEFAULTS["openalpr_runtime_data"].default))


def _native_missing() -> str | None:
    """Why the native tests cannot run here, or None."""
    if importlib.util.find_spec("openalpr") is None:
        return "the OpenALPR Python binding is not installed"
    try:
        ctypes.CDLL(NATIVE_LIBRARY)
    except OSError:
        return f"the native OpenALPR library ({NATIVE_LIBRARY}) is not installed"
    if not Path(CONFIG).is_file() or not Path(RUNTIME_DATA).is_dir():
        return f"no OpenALPR config ({CONFIG}) or runtime data ({RUNTIME_DATA})"
    return None


native = pytest.mark.skipif(_native_missing() is not None, reason=f"{_native_missing()}: see the module's docstring")


def photo(plate: str) -> Image:
    """A plate crop in the middle of a plain frame three times its size (OpenALPR looks for plates)."""
    crop = cv2.imread(str(PLATES / f"us-{plate}.png"))
    assert crop is not None
    height, width = crop.shape[:2]
    frame = np.full((height * 3, width * 3, 3), 120, dtype=np.uint8)
    frame[height : 2 * height, width : 2 * width] = crop
    return frame


@pytest.fixture(scope="module")
def openalpr() -> Iterator[Engine]:
    engine = OpenAlprEngine(country="us", config=CONFIG, runtime_data=RUNTIME_DATA)
    yield engine
    engine.close()


@native
def test_reads_real_plates_in_one_batch_in_order(openalpr: Engine) -> None:
    plates = ["47A434F", "318ACZ", "050LRR"]
    results = openalpr.recognize([photo(p) for p in plates], Options(country="us", topn=5))
    assert [r.plates[0].plate for r in results] == plates
    for result in results:
        read = result.plates[0]
        assert read.confidence > 70
        assert len(read.coordinates) == 4
        assert result.width == photo("318ACZ").shape[1]


@native
def test_topn_bounds_the_candidates(openalpr: Engine) -> None:
    (few,) = openalpr.recognize([photo("318ACZ")], Options(country="us", topn=3))
    (many,) = openalpr.recognize([photo("318ACZ")], Options(country="us", topn=10))
    assert len(few.plates[0].candidates) == 3
    assert len(many.plates[0].candidates) > 3
    assert few.plates[0].candidates[0].plate == "318ACZ"


@native
def test_the_state_picks_the_region_whose_pattern_fits(openalpr: Engine) -> None:
    """Arkansas plates fit Arkansas's pattern, not Alabama's; the state is the default region."""
    (arkansas,) = openalpr.recognize([photo("318ACZ")], Options(country="us", state="ar", topn=10))
    (alabama,) = openalpr.recognize([photo("318ACZ")], Options(country="us", state="al", topn=10))
    assert (arkansas.plates[0].region, arkansas.plates[0].matches_template) == ("ar", True)
    assert (alabama.plates[0].region, alabama.plates[0].matches_template) == ("al", False)


@native
def test_a_second_country_loads_its_own_engine(openalpr: Engine) -> None:
    (result,) = openalpr.recognize([photo("318ACZ")], Options(country="eu", topn=5))
    assert result.width > 0  # an eu engine loaded and ran; its reading of a US plate is its own business
    (again,) = openalpr.recognize([photo("318ACZ")], Options(country="us", topn=5))
    assert again.plates[0].plate == "318ACZ"


def test_a_config_file_that_does_not_exist_is_one_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "openalpr.conf"
    with pytest.raises(
        OpenAlprError, match=rf"config file '{re.escape(str(missing))}' does not exist .*OPENALPR_CONFIG"
    ):
        OpenAlprEngine(country="us", config=str(missing), runtime_data=str(tmp_path))


def test_a_wrong_runtime_data_folder_is_one_clear_error(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "openalpr.conf"
    config.write_text("[common]\n")
    with pytest.raises(OpenAlprError, match=r"runtime data folder .* lacks region, ocr, config"):
        OpenAlprEngine(country="us", config=str(config), runtime_data=str(tmp_path / "nowhere"))
    out, err = capfd.readouterr()
    assert out + err == "", "nothing but our error: OpenALPR was not asked to load"


def test_the_command_line_says_it_in_one_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    image = tmp_path / "plate.png"
    cv2.imwrite(str(image), photo("318ACZ"))
    done = subprocess.run(
        [sys.executable, "-m", "platestream", "recognize", "--engine", "openalpr", str(image)],
        env=os.environ | {"PLATESTREAM_OPENALPR_CONFIG": str(tmp_path / "none.conf")},
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "none.conf' does not exist" in lines[0]
