"""The declared topics (topics.json), as typed values."""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources


@dataclass(frozen=True)
class TopicSpec:
    name: str
    schema: str
    partitions: int
    retention_ms: int
    cleanup_policy: str
    doc: str

    @property
    def configs(self) -> dict[str, str]:
        return {"retention.ms": str(self.retention_ms), "cleanup.policy": self.cleanup_policy}


def _load() -> tuple[TopicSpec, ...]:
    text = resources.files(__package__).joinpath("topics.json").read_text(encoding="utf-8")
    return tuple(TopicSpec(**entry) for entry in json.loads(text)["topics"])


TOPICS: tuple[TopicSpec, ...] = _load()


def topic(name: str) -> TopicSpec:
    for spec in TOPICS:
        if spec.name == name:
            return spec
    raise KeyError(f"no declared topic {name!r}; declared: {', '.join(t.name for t in TOPICS)}")
