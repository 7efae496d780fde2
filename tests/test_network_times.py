"""`platestream bench accuracy --profile`: where an engine's time goes, network by network."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import cv2
import pytest
from click.testing import CliRunner

from platestream.cli import main
from platestream.workers.benchmark import plate_box
from platestream.workers.engine import Engine, Options
from platestream.workers.network_times import NetworkTime, ProfileError, TimedSession, time_networks
from platestream.workers.synthetic import street_scene


def _us_folder(root: Path, engine: Engine) -> None:
    folder = root / "us"
    folder.mkdir()
    for seed, text in enumerate(("7XYZ123", "8ABC234")):
        image = street_scene(text, seed=seed, plate_width=280, style="us")
        cv2.imwrite(str(folder / f"{text}.png"), image)
        (read,) = engine.recognize([image], Options(country="us"))
        x, y, width, height = (round(v) for v in plate_box(read.plates[0]))
        (folder / f"{text}.txt").write_text(f"{text}.png\t{x}\t{y}\t{width}\t{height}\t{text}\n")


def test_profile_prints_each_network_s_time_per_call_and_calls_per_image(tmp_path: Path, engine: Engine) -> None:
    _us_folder(tmp_path, engine)
    result = CliRunner().invoke(main, ["bench", "accuracy", str(tmp_path), "--profile"])
    assert result.exit_code == 0, result.output
    assert "us      2      100.0%" in result.output
    (line,) = [row for row in result.output.splitlines() if "networks (ms per call x calls per image)" in row]
    parts = [re.fullmatch(r"(.+) ([\d.]+) ms x ([\d.]+)", part) for part in line.split(": ", 1)[1].split(", ")]
    shown = {m.group(1): (float(m.group(2)), float(m.group(3))) for m in parts if m}
    # each frame looked at once or twice (a second look where no plate was read from a sure box),
    # each plate's line found and read; the text-line detector the regions' readers share, once
    assert set(shown) == {"plate detector", "line detector", "reader us"}
    assert 1.0 <= shown["plate detector"][1] <= 2.0
    assert shown["reader us"][1] >= 1.0
    assert all(ms > 0 for ms, _ in shown.values())


def test_profile_in_json_gives_each_network_s_calls_and_milliseconds(tmp_path: Path, engine: Engine) -> None:
    _us_folder(tmp_path, engine)
    result = CliRunner().invoke(main, ["bench", "accuracy", str(tmp_path), "--profile", "--json"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output.strip().splitlines()[-1])
    networks = figures["networks"]
    assert 2 <= networks["plate detector"]["calls"] <= 4  # two frames, each looked at once or twice
    assert networks["reader us"]["calls"] >= 2
    assert all(timing["ms"] > 0 for timing in networks.values() if timing["calls"])


def test_profile_of_an_engine_without_the_default_engine_s_networks_is_refused() -> None:
    with pytest.raises(ProfileError, match="'openalpr' engine has none"):
        time_networks(SimpleNamespace(name="openalpr"))


def test_a_timed_session_counts_every_call_even_one_that_fails_and_is_otherwise_the_session() -> None:
    class Session:
        inputs = ("x",)

        def run(self, outputs: Any, feeds: dict[str, int]) -> list[int]:
            if feeds["x"] < 0:
                raise ValueError("negative")
            return [feeds["x"] * 2]

    timing = NetworkTime()
    timed = TimedSession(Session(), timing)
    assert timed.run(None, {"x": 3}) == [6]
    with pytest.raises(ValueError, match="negative"):
        timed.run(None, {"x": -1})
    assert timing.calls == 2
    assert timing.seconds >= 0
    assert timed.inputs == ("x",)
