"""Settings come from flags, PLATESTREAM_* variables and a TOML file, in that order."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from platestream.cli import main
from platestream.errors import ConfigError
from platestream.settings import Settings, load


def test_environment_beats_file_and_flag_beats_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "platestream.toml"
    config.write_text('topic_prefix = "from-file."\nlog_level = "DEBUG"\n')
    monkeypatch.setenv("PLATESTREAM_CONFIG", str(config))
    monkeypatch.setenv("PLATESTREAM_TOPIC_PREFIX", "from-env.")
    assert load(Settings).topic_prefix == "from-env."
    assert load(Settings).log_level == "DEBUG"
    assert load(Settings, topic_prefix="from-flag.").topic_prefix == "from-flag."


def test_settings_are_frozen() -> None:
    settings = load(Settings)
    with pytest.raises(ValueError, match="frozen"):
        settings.topic_prefix = "x"


def test_a_bad_value_names_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLATESTREAM_WIRE_FORMAT", "protobuf")
    with pytest.raises(ConfigError, match=r"PLATESTREAM_WIRE_FORMAT.*'protobuf'"):
        load(Settings)


def test_a_missing_config_file_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLATESTREAM_CONFIG", "/nonexistent/platestream.toml")
    with pytest.raises(ConfigError, match=r"/nonexistent/platestream\.toml"):
        load(Settings)


def test_help_lists_the_services_and_each_flag_shows_its_variable() -> None:
    runner = CliRunner()
    top = runner.invoke(main, ["--help"])
    assert top.exit_code == 0
    for command in ("broker", "topics", "demo", "schema"):
        assert command in top.output
    start = runner.invoke(main, ["broker", "start", "--help"], terminal_width=200)
    assert "--kafka-bootstrap" in start.output
    assert "PLATESTREAM_KAFKA_BOOTSTRAP" in start.output
    assert "PLATESTREAM_TOPIC_PREFIX" in start.output


def test_secrets_are_never_printed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLATESTREAM_KAFKA_SASL_PASSWORD", "hunter2")
    settings = load(Settings)
    assert "hunter2" not in repr(settings)
    assert "hunter2" not in str(settings.model_dump())


def test_cli_reports_a_missing_cluster_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PLATESTREAM_KAFKA_BOOTSTRAP", raising=False)
    result = CliRunner().invoke(main, ["topics", "create", "--state-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "platestream broker start" in result.output
    assert "Traceback" not in result.output


def test_kubernetes_topic_manifests_match_the_declared_topics() -> None:
    from platestream.kafka import topic_manifests
    from tests.factories import REPO

    committed = (REPO / "deploy" / "k8s" / "topics" / "topics.yaml").read_text()
    assert committed == topic_manifests(), "regenerate: platestream topics manifests > deploy/k8s/topics/topics.yaml"


def test_an_unreachable_broker_is_one_clear_error(tmp_path: Path) -> None:
    import cv2

    from platestream.workers.synthetic import street_scene

    image = tmp_path / "car.jpg"
    cv2.imwrite(str(image), street_scene("AB12CDE"))
    result = CliRunner().invoke(
        main, ["produce", "files", str(image), "--kafka-bootstrap", "127.0.0.1:9", "--kafka-connect-timeout-ms", "1500"]
    )
    assert result.exit_code == 2
    assert "platestream: error: cannot reach Kafka at '127.0.0.1:9'" in result.output
    assert "127.0.0.1:9" in result.output
    assert "Traceback" not in result.output


def test_recognize_takes_folders_and_reports_every_input_in_order(tmp_path: Path) -> None:
    import json

    import cv2

    from platestream.workers.synthetic import street_scene

    folder = tmp_path / "gate"
    (folder / "night").mkdir(parents=True)
    cv2.imwrite(str(folder / "a.jpg"), street_scene("AB12CDE", seed=1, plate_width=280))
    cv2.imwrite(str(folder / "night" / "b.png"), street_scene("KL35PQR", seed=2, plate_width=280))
    (folder / "c.jpg").write_bytes(b"not a picture")
    (folder / "notes.txt").write_text("not an image: skipped by its name")
    missing = tmp_path / "gone.jpg"
    result = CliRunner().invoke(main, ["recognize", "--country", "eu", "--format", "jsonl", str(folder), str(missing)])
    assert result.exit_code == 1
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["file"] for line in lines] == [str(folder / n) for n in ("a.jpg", "c.jpg", "night/b.png")] + [
        str(missing)
    ]
    assert lines[0]["alpr_results"]["results"][0]["plate"] == "AB12CDE"
    assert lines[2]["alpr_results"]["results"][0]["plate"] == "KL35PQR"
    assert "error" in lines[1]
    assert "0x" not in lines[1]["error"], "no object addresses in a message for people"
    assert lines[3]["error"] == "No such file or directory"
    assert "2 of 4 inputs could not be read" in result.stderr

    pretty = CliRunner().invoke(main, ["recognize", "--country", "eu", "--format", "pretty", str(folder / "a.jpg")])
    assert pretty.exit_code == 0
    assert pretty.stdout.startswith(f"{folder / 'a.jpg'}: AB12CDE (")


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--country", "xx"], "country 'xx' is not supported: use us, eu or br"),
        (["--country", "us,eu"], "one country per service, got 'us,eu'"),
        (["--state", "zz"], "state 'zz' has no plate forms here"),
    ],
)
def test_an_unknown_country_or_state_is_refused_before_any_image_is_read(
    tmp_path: Path, flags: list[str], message: str
) -> None:
    result = CliRunner().invoke(main, ["recognize", *flags, str(tmp_path)])
    assert result.exit_code != 0
    assert message in result.output
    assert "Value error" not in result.output


def test_known_regions_are_taken_in_any_case(monkeypatch: pytest.MonkeyPatch) -> None:
    from platestream.settings import EngineSettings, ProducerSettings

    assert load(EngineSettings, country="EU", state="FR").country == "EU"
    assert load(EngineSettings, country="us", state="us-md").state == "us-md"
    assert load(ProducerSettings, country="BR").country == "br"
    with pytest.raises(ConfigError, match="one country per producer"):
        load(ProducerSettings, country="us,eu")
    # OpenALPR's countries are its runtime data's: the default engine's list does not apply
    assert load(EngineSettings, engine="openalpr", country="au").country == "au"


def test_recognize_annotate_writes_each_image_with_its_plates_drawn(tmp_path: Path) -> None:
    import cv2
    import numpy as np

    from platestream.workers.synthetic import street_scene

    photos = tmp_path / "photos"
    (photos / "a").mkdir(parents=True)
    (photos / "b").mkdir()
    scene = street_scene("AB12CDE", seed=1, plate_width=280)
    cv2.imwrite(str(photos / "a" / "car.jpg"), scene)
    cv2.imwrite(str(photos / "b" / "car.jpg"), street_scene("", seed=3))  # same name, no plate
    out = tmp_path / "annotated"
    result = CliRunner().invoke(main, ["recognize", "--country", "eu", "--annotate", str(out), str(photos)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["car-2.jpg", "car.jpg"]
    drawn = cv2.imread(str(out / "car.jpg"))
    empty = cv2.imread(str(out / "car-2.jpg"))
    assert drawn is not None
    assert empty is not None
    assert drawn.shape == scene.shape

    # the plate is outlined in green and labelled: many pure green-ish pixels appear that the scene lacks
    def green(image: np.ndarray) -> int:
        b, g, r = image[:, :, 0].astype(int), image[:, :, 1].astype(int), image[:, :, 2].astype(int)
        return int(((g > 180) & (b < 110) & (r < 110)).sum())

    assert green(drawn) > green(scene) + 500
    assert green(empty) < 200  # nothing drawn where nothing was read


@pytest.mark.parametrize("command", [["recognize"], ["search"], ["bench", "accuracy"], ["bench", "speed"]])
def test_commands_that_never_reach_kafka_show_no_kafka_options(command: list[str]) -> None:
    shown = CliRunner().invoke(main, [*command, "--help"]).output
    assert "--kafka-bootstrap" not in shown
    assert "--wire-format" not in shown
    assert "--topic-prefix" not in shown
    assert "--log-level" in shown  # what does apply stays


def test_an_unreachable_cluster_is_one_line_without_the_clients_own_noise() -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "PLATESTREAM_KAFKA_BOOTSTRAP": "127.0.0.1:9", "PLATESTREAM_KAFKA_CONNECT_TIMEOUT_MS": "1500"}
    done = subprocess.run([sys.executable, "-m", "platestream", "topics", "create"], capture_output=True, text=True,
                          env=env, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert lines == [lines[0]]
    assert lines[0].startswith("platestream: error: cannot reach Kafka at '127.0.0.1:9'")


def test_a_bad_flag_value_names_the_flag_and_its_variable(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["recognize", "--topn", "0", str(tmp_path)])
    assert result.exit_code == 2
    assert "--topn / PLATESTREAM_TOPN: Input should be greater than or equal to 1 (got 0)" in result.output


def test_the_readme_says_which_settings_each_command_reads() -> None:
    import re

    from platestream import settings as settings_module

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    table = re.search(r"<!-- settings-table:[^>]*-->\n(.*?)\n<!-- /settings-table -->", readme, re.S)
    assert table is not None, "the README's settings table is missing"
    assert table.group(1) == settings_module.settings_table()
    listed = {cls for cls, _ in settings_module.READERS_OF}
    every = {cls for cls in vars(settings_module).values()
             if isinstance(cls, type) and issubclass(cls, settings_module.Settings)}  # fmt: skip
    assert every == listed, f"settings groups missing from the table: {every - listed}"
