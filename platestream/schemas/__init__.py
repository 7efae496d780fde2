"""The Avro contracts of every platestream topic, and their codecs."""

from platestream.schemas.codec import (
    SCHEMA_NAMES,
    Codec,
    Record,
    WireFormat,
    from_json,
    schema,
    schema_json,
    to_json,
    to_json_dict,
    validate,
)
from platestream.schemas.topics import TOPICS, TopicSpec, topic

__all__ = [
    "SCHEMA_NAMES",
    "TOPICS",
    "Codec",
    "Record",
    "TopicSpec",
    "WireFormat",
    "from_json",
    "schema",
    "schema_json",
    "to_json",
    "to_json_dict",
    "topic",
    "validate",
]
