"""What users install: the wheel, built from a clean copy of the tree by the images' own install
script, installed alone into a fresh virtual environment away from the source tree, runs what the
images run: the command line, `models fetch`, `recognize`, and the services against the real broker."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from platestream.demo import DEMO_TRAFFIC
from tests.factories import REPO

pytestmark = pytest.mark.slow

INSTALL_SCRIPT = REPO / "deploy" / "docker" / "install.sh"
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]


@dataclass(frozen=True)
class Installed:
    venv: Path
    dist: Path
    models: Path
    home: Path  # the working folder of its commands: nowhere near the source tree

    def env(self, **extra: str) -> dict[str, str]:
        keep = {key: value for key, value in os.environ.items() if key in ("LANG", "LC_ALL", "TMPDIR")}
        return (
            keep
            | {
                "PATH": f"{self.venv / 'bin'}:/usr/local/bin:/usr/bin:/bin",
                "HOME": str(self.home),
                "XDG_CACHE_HOME": str(self.home / ".cache"),  # no model cache of the developer's
                "PLATESTREAM_MODEL_DIR": str(self.models),  # the models baked in at install
                "PLATESTREAM_LOG_FORMAT": "json",
            }
            | extra
        )

    def run(
        self, *args: str, env: dict[str, str] | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.venv / "bin" / "platestream"), *args],
            cwd=self.home, env=self.env(**(env or {})), capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip

    def start(self, *args: str, log: Path, **extra: str) -> subprocess.Popen[bytes]:
        with open(log, "wb") as out:
            return subprocess.Popen(
                [str(self.venv / "bin" / "platestream"), *args],
                cwd=self.home, env=self.env(**extra), stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip


def _clean_checkout(into: Path) -> Path:
    """The files a fresh clone has (tracked, and new files not ignored), nothing built or cached."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, capture_output=True, check=True,
    ).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():
            target = into / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read_bytes())
            target.chmod(source.stat().st_mode)
    return into


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    root = tmp_path_factory.mktemp("wheel")
    source = _clean_checkout(root / "source")
    done = Installed(root / "venv", root / "dist", root / "models", root / "home")
    done.home.mkdir()
    step = subprocess.run(
        ["sh", str(source / "deploy" / "docker" / "install.sh"), str(source), str(done.venv), "all", str(done.models)],
        env=os.environ | {"DIST_DIR": str(done.dist), "PYTHON": sys.executable}, capture_output=True, text=True,
        timeout=900, check=False,
    )  # fmt: skip
    assert step.returncode == 0, f"the images' install steps failed:\n{step.stdout}\n{step.stderr}"
    return done


def _package_files() -> set[str]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "platestream"],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    return {name for name in listed if (REPO / name).is_file()}


def test_wheel_and_sdist_hold_every_file_of_the_package_under_one_namespace(installed: Installed) -> None:
    (wheel,) = installed.dist.glob("platestream-*.whl")
    (sdist,) = installed.dist.glob("platestream-*.tar.gz")
    assert wheel.name.startswith(f"platestream-{VERSION}-")
    names = set(zipfile.ZipFile(wheel).namelist())
    tops = {name.split("/", 1)[0] for name in names}
    assert tops == {"platestream", f"platestream-{VERSION}.dist-info"}, f"modules outside platestream: {tops}"
    wanted = _package_files()
    assert any(name.endswith(".avsc") for name in wanted)
    assert "platestream/workers/engine/default.py" in wanted
    assert wanted - names == set(), "files of the package missing from the wheel"
    import tarfile

    with tarfile.open(sdist) as archive:
        in_sdist = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert wanted - in_sdist == set(), "files of the package missing from the sdist"


def test_every_folder_of_python_code_is_a_package() -> None:
    """A folder without __init__.py would be skipped by package discovery: catch it here."""
    folders = {(REPO / name).parent for name in _package_files() if name.endswith(".py")}
    missing = sorted(str(folder.relative_to(REPO)) for folder in folders if not (folder / "__init__.py").is_file())
    assert missing == []


def test_installed_command_line_runs_from_site_packages(installed: Installed) -> None:
    where = subprocess.run(
        [str(installed.venv / "bin" / "python"), "-c", "import platestream.workers.engine.default as m; print(m.__file__)"],  # noqa: E501
        cwd=installed.home, env=installed.env(), capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    assert where.startswith(str(installed.venv)), where
    version = installed.run("--version")
    assert version.returncode == 0
    assert version.stdout.strip() == f"platestream, version {VERSION}"
    helped = installed.run("--help")
    assert helped.returncode == 0
    for command in (
        "recognize",
        "worker",
        "aggregate",
        "store",
        "search",
        "models",
        "demo",
        "serve",
        "alerts",
        "console",
        "users",
    ):
        assert command in helped.stdout
    shipped = subprocess.run(
        [str(installed.venv / "bin" / "python"), "-m", "platestream.healthcheck"], cwd=installed.home,
        env=installed.env(PLATESTREAM_HEALTH_PORT="0"), capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert shipped.returncode == 0, f"the images' HEALTHCHECK module is not in the wheel: {shipped.stderr}"
    fetched = installed.run("models", "fetch")
    assert fetched.returncode == 0, fetched.stderr
    assert str(installed.models) in fetched.stdout  # baked in at install, not converted again
    no_other_runtime = subprocess.run(
        [str(installed.venv / "bin" / "python"), "-m", "pip", "list", "--format=json"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    packages = {item["name"].lower() for item in json.loads(no_other_runtime.stdout)}
    assert "onnxruntime" in packages
    assert "onnxruntime-gpu" not in packages
    assert not {"torch", "build"} & packages


@pytest.mark.parametrize("reader", ["ppocr", "ppocr-head"])
def test_installed_recognize_reads_a_rendered_plate(installed: Installed, tmp_path: Path, reader: str) -> None:
    """With each reader whose models are package data or come from a wheel (the plate head's file
    is checked against its SHA-256 as it loads)."""
    import cv2

    from platestream.workers.synthetic import street_scene

    image = tmp_path / "car.jpg"
    cv2.imwrite(str(image), street_scene("AB12CDE", seed=3, plate_width=280))
    os.utime(image, (978_307_200, 978_307_200))  # a file from 2001
    done = installed.run("recognize", "--reader", reader, "--country", "eu", str(image))
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert record["results"][0]["plate"] == "AB12CDE"
    assert abs(record["epoch_time"] / 1000 - time.time()) < 120, "epoch_time is when it was processed"


def test_installed_console_serves_its_pages_templates_and_script(installed: Installed, tmp_path: Path) -> None:
    """The console's templates and static files are package data: a login page and its script come
    from the installed wheel, and an account made by the installed command logs in."""
    import re
    import time

    import requests

    from platestream.broker import free_port

    database, port = tmp_path / "console.db", free_port()
    made = installed.run("users", "add", "ann", "--role", "editor", env={
        "PLATESTREAM_SQLITE_PATH": str(database), "PLATESTREAM_CONSOLE_PASSWORD": "a long enough secret"})  # fmt: skip
    assert made.returncode == 0, made.stderr
    server = installed.start("console", log=tmp_path / "console.log", PLATESTREAM_SQLITE_PATH=str(database),
                             PLATESTREAM_CONSOLE_PORT=str(port))  # fmt: skip
    try:
        url, session = f"http://127.0.0.1:{port}", requests.Session()
        deadline = time.monotonic() + 60
        while True:
            try:
                form = session.get(url + "/login", timeout=5)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, (tmp_path / "console.log").read_text()
                time.sleep(0.5)
        token = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert token, form.text
        landed = session.post(url + "/login", data={"csrf": token.group(1), "username": "ann",
                                                    "password": "a long enough secret"})  # fmt: skip
        assert "Vehicle passes" in landed.text
        assert "new passes appear at the top" in session.get(url + "/static/console.js").text
    finally:
        server.terminate()
        assert server.wait(30) == 0, (tmp_path / "console.log").read_text()


@pytest.fixture
def demo_images(tmp_path: Path) -> Path:
    from platestream.demo import _write_images

    folder = tmp_path / "frames"
    _write_images(folder)
    return folder


@pytest.mark.kafka
def test_installed_services_run_the_pipeline_on_the_broker(
    installed: Installed, kafka_bootstrap: str, demo_images: Path, tmp_path: Path
) -> None:
    """The commands the pods run, each its own process: frames in, one stored pass per vehicle out."""
    prefix = f"wheel{time.monotonic_ns() % 10**9}."
    common = {
        "PLATESTREAM_KAFKA_BOOTSTRAP": kafka_bootstrap, "PLATESTREAM_TOPIC_PREFIX": prefix,
        "PLATESTREAM_STATE_DIR": str(tmp_path / "state"), "PLATESTREAM_HEALTH_PORT": "0",
    }  # fmt: skip
    created = installed.run("topics", "create", "--partitions", "2", env=common)
    assert created.returncode == 0, created.stderr
    produced = installed.run("produce", "files", str(demo_images), env=common)
    assert produced.returncode == 0, produced.stderr
    database = tmp_path / "store.db"
    services = {
        "worker": installed.start("worker", log=tmp_path / "worker.log", PLATESTREAM_COUNTRY="eu",
                                  PLATESTREAM_TRANSACTIONAL_ID=prefix + "w0", **common),
        "aggregate": installed.start("aggregate", log=tmp_path / "aggregate.log", PLATESTREAM_COUNTRY="eu",
                                     PLATESTREAM_IDLE_FLUSH_MS="1500", PLATESTREAM_TRANSACTIONAL_ID=prefix + "a0",
                                     **common),
        "store": installed.start("store", log=tmp_path / "store.log", PLATESTREAM_SQLITE_PATH=str(database), **common),
    }  # fmt: skip
    wanted = sorted(plate for passes in DEMO_TRAFFIC.values() for plate, _ in passes)
    stored: list[str] = []
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and len(stored) < len(wanted):
            for name, process in services.items():
                assert process.poll() is None, f"{name} exited: {(tmp_path / f'{name}.log').read_text()[-3000:]}"
            time.sleep(1)
            if database.exists():
                with sqlite3.connect(database) as connection:
                    stored = sorted(row[0] for row in connection.execute("SELECT plate FROM plate_groups"))
    finally:
        for process in services.values():
            process.send_signal(signal.SIGTERM)
        codes = {name: process.wait(timeout=60) for name, process in services.items()}
    assert stored == wanted
    assert codes == {"worker": 0, "aggregate": 0, "store": 0}, codes
    found = installed.run("search", "AB12CDE", env={"PLATESTREAM_SQLITE_PATH": str(database)})
    assert found.returncode == 0, found.stdout + found.stderr
    assert "AB12CDE" in found.stdout


@pytest.mark.kafka
def test_installed_demo_runs_end_to_end(installed: Installed, kafka_bootstrap: str, tmp_path: Path) -> None:
    done = installed.run(
        "demo", "--log-level", "WARNING", timeout=300,
        env={"PLATESTREAM_KAFKA_BOOTSTRAP": kafka_bootstrap, "PLATESTREAM_STATE_DIR": str(tmp_path / "state")},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 vehicle passes" in done.stdout
    assert "AB12CDE" in done.stdout


def _resolved(installed: Installed, extras: str) -> set[str]:
    """The distributions `pip install wheel[extras]` would install (resolved from metadata only)."""
    (wheel,) = installed.dist.glob("platestream-*.whl")
    report = installed.home / f"resolve-{extras}.json"
    subprocess.run(
        [str(installed.venv / "bin" / "python"), "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
         "--report", str(report), f"{wheel}[{extras}]"],
        capture_output=True, text=True, check=True, timeout=300,
    )  # fmt: skip
    return {item["metadata"]["name"].lower() for item in json.loads(report.read_text())["install"]}


@pytest.mark.parametrize(("dockerfile", "engine", "absent"), [
    ("Dockerfile", "onnxruntime", {"onnxruntime-gpu"}),
    ("deploy/docker/gpu.Dockerfile", "onnxruntime-gpu", {"onnxruntime"}),
    ("deploy/docker/openalpr.Dockerfile", None, {"onnxruntime", "onnxruntime-gpu"}),
])  # fmt: skip
def test_each_image_installs_one_engine_runtime(installed: Installed, dockerfile: str, engine: str | None,
                                                absent: set[str]) -> None:  # fmt: skip
    """The extras each image's build stage installs (read from its Dockerfile) resolve to exactly one
    engine runtime (the OpenALPR image's comes from OpenALPR's own build); the CPU image's install is
    replayed whole by the fixture, the others resolved."""
    found = re.findall(r"platestream-install /src /opt/platestream (\S+)", (REPO / dockerfile).read_text())
    assert len(found) == 1, f"{dockerfile} must install through deploy/docker/install.sh once"
    packages = _resolved(installed, found[0])
    assert engine is None or engine in packages, sorted(packages)
    assert absent & packages == set(), sorted(packages)
    assert "torch" not in packages


def test_the_openalpr_image_install_replays_and_says_what_is_missing(
    installed: Installed, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The OpenALPR image's install steps, replayed: the wheel with its extras (no ONNX Runtime),
    and a clear error, not a traceback, where the native library is not there."""
    import cv2

    from platestream.workers.synthetic import street_scene

    extras = re.findall(
        r"platestream-install /src /opt/platestream (\S+)", (REPO / "deploy/docker/openalpr.Dockerfile").read_text()
    )
    root = tmp_path_factory.mktemp("openalpr-image")
    source = _clean_checkout(root / "source")
    venv = root / "venv"
    step = subprocess.run(
        ["sh", str(source / "deploy" / "docker" / "install.sh"), str(source), str(venv), extras[0]],
        env=os.environ | {"PYTHON": sys.executable}, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert step.returncode == 0, f"the OpenALPR image's install steps failed:\n{step.stdout}\n{step.stderr}"
    image = root / "car.jpg"
    cv2.imwrite(str(image), street_scene("AB12CDE", seed=3, plate_width=280))
    image_env = Installed(venv, installed.dist, installed.models, installed.home)
    done = image_env.run("recognize", "--engine", "openalpr", str(image),
                         env={"LD_LIBRARY_PATH": str(root / "no-openalpr-here")})  # fmt: skip
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert "OpenALPR" in done.stderr, done.stderr
