"""The deployment files parse, and every PLATESTREAM_* variable they set is a real setting."""

from __future__ import annotations

import re

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
