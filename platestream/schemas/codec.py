"""Avro codecs for every topic, and the OpenALPR JSON form of the same records.

Records are plain dicts shaped like the OpenALPR JSON. On the wire they are Avro binary in the
Avro single-object encoding (marker C3 01, then the 8-byte CRC-64-AVRO fingerprint of the writer's
schema), so a consumer reads a record of another release by that release's schema; or framed for the
Confluent Schema Registry (magic byte 0, then a 4-byte schema id); or plain Avro binary.
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import io
import json
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import fastavro
from fastavro.read import SchemaResolutionError
from fastavro.schema import fingerprint as _fingerprint
from fastavro.schema import to_parsing_canonical_form
from fastavro.types import Schema
from fastavro.validation import ValidationError

from platestream.errors import SchemaError

NAMESPACE = "io.platestream"
SCHEMA_NAMES = (
    "frame",
    "alpr_results",
    "alpr_group",
    "heartbeat",
    "dead_letter",
    "aggregator_state",
    "producer_checkpoint",
    "alerts",
)
_CONFLUENT_MAGIC = 0
_CONFLUENT_HEADER = struct.Struct(">bI")
_SINGLE_OBJECT_MARKER = b"\xc3\x01"
_SINGLE_OBJECT_HEADER_SIZE = len(_SINGLE_OBJECT_MARKER) + 8

Record = dict[str, Any]


class WireFormat(enum.StrEnum):
    SINGLE_OBJECT = "single-object"
    AVRO = "avro"
    CONFLUENT = "confluent"


def _read_json(name: str) -> Any:
    return json.loads(resources.files(__package__).joinpath(name).read_text(encoding="utf-8"))


@cache
def _named_schemas() -> dict[str, Any]:
    named: dict[str, Any] = {}
    for shared in _read_json("common.avsc"):
        fastavro.parse_schema(shared, named_schemas=named)
    return named


@cache
def schema(name: str) -> Schema:
    """The parsed Avro schema of one topic's records, by its file name without `.avsc`."""
    if name not in SCHEMA_NAMES:
        raise SchemaError(f"unknown schema {name!r}; known: {', '.join(SCHEMA_NAMES)}")
    named = dict(_named_schemas())
    parsed = fastavro.parse_schema(_read_json(f"{name}.avsc"), named_schemas=named)
    _NAMED_TYPES.update(named)
    return parsed


RELEASED = "released"  # released/<version>/*.avsc: every release's contracts, kept as shipped
CURRENT = "this release"


def released_versions() -> list[str]:
    """The versions whose contracts are kept, oldest first."""
    folder = resources.files(__package__).joinpath(RELEASED)
    versions = [entry.name for entry in folder.iterdir() if entry.is_dir() and entry.name[0].isdigit()]
    return sorted(versions, key=lambda version: tuple(int(part) for part in version.split(".")))


@cache
def released_schema(version: str, name: str) -> Schema:
    """Schema `name` as release `version` shipped it (its own common types)."""
    base = f"{RELEASED}/{version}"
    if name not in SCHEMA_NAMES:
        raise SchemaError(f"unknown schema {name!r}; known: {', '.join(SCHEMA_NAMES)}")
    named: dict[str, Any] = {}
    for shared in _read_json(f"{base}/common.avsc"):
        fastavro.parse_schema(shared, named_schemas=named)
    return fastavro.parse_schema(_read_json(f"{base}/{name}.avsc"), named_schemas=named)


def _released_has(version: str, name: str) -> bool:
    """Whether release `version` had schema `name` (a later release may add one)."""
    return resources.files(__package__).joinpath(f"{RELEASED}/{version}/{name}.avsc").is_file()


def fingerprint(parsed: Schema) -> bytes:
    """The 8 bytes that name a schema in the single-object encoding: the CRC-64-AVRO fingerprint of
    its parsing canonical form, little-endian as the Avro specification writes it."""
    return bytes.fromhex(_fingerprint(to_parsing_canonical_form(parsed), "CRC-64-AVRO"))


@dataclass(frozen=True)
class Contract:
    """One release's side of a schema: the schema its consumers read records into and its producers
    write, and every schema it knows a record may have been written with, by fingerprint."""

    version: str
    own: Schema
    known: Mapping[bytes, tuple[str, Schema]]

    def schema_of(self, version: str | None) -> Schema:
        """The schema to write records with: this release's, or a known release's (while consumers
        of that release remain)."""
        if version is None or version == self.version:
            return self.own
        for name, parsed in self.known.values():
            if name == version:
                return parsed
        known = ", ".join(sorted({name for name, _ in self.known.values()}))
        raise SchemaError(f"no released contract {version!r} to write records with; known: {known}")


@cache
def this_release(name: str) -> Contract:
    """`name` as this release reads and writes it, knowing every released version's schema."""
    own = schema(name)
    known = {fingerprint(released_schema(version, name)): (version, released_schema(version, name))
             for version in released_versions() if _released_has(version, name)}  # fmt: skip
    known.setdefault(fingerprint(own), (CURRENT, own))
    return Contract(CURRENT, own, known)


def schema_json(name: str) -> str:
    """The schema text to register with a schema registry: self-contained (each shared type written
    out where it is first used), with its defaults and docs, which a reader of another release
    needs to resolve records."""
    if name not in SCHEMA_NAMES:
        raise SchemaError(f"unknown schema {name!r}; known: {', '.join(SCHEMA_NAMES)}")
    shared = {f"{NAMESPACE}.{node['name']}": node for node in _read_json("common.avsc")}
    return json.dumps(_inline(_read_json(f"{name}.avsc"), shared, set()))


def _inline(node: Any, shared: dict[str, Any], written: set[str]) -> Any:
    """`node` with each shared type's name replaced by its definition the first time it appears."""
    if isinstance(node, str):
        full = node if "." in node else f"{NAMESPACE}.{node}"
        if full in shared and full not in written:
            written.add(full)
            return _inline(shared[full], shared, written)
        return node
    if isinstance(node, list):
        return [_inline(item, shared, written) for item in node]
    if isinstance(node, dict):
        inlined = {}
        for key, value in node.items():
            inlined[key] = _inline(value, shared, written) if key in ("type", "items", "values", "fields") else value
        return inlined
    return node


_NAMED_TYPES: dict[str, Any] = {}
_PRIMITIVES: dict[str, tuple[type, ...]] = {
    "null": (type(None),),
    "boolean": (bool,),
    "int": (int,),
    "long": (int,),
    "float": (int, float),
    "double": (int, float),
    "bytes": (bytes,),
    "string": (str,),
}


def _problem(node: Any, datum: Any, path: str) -> str | None:
    """Where and why `datum` breaks `node`, for a message a person can act on."""
    if isinstance(node, list):  # a union: fine if any branch fits
        problems = [_problem(branch, datum, path) for branch in node]
        if all(problems):
            kinds = [branch if isinstance(branch, str) else branch.get("type") for branch in node]
            return f"field {path!r} has value {datum!r:.60}, expected one of {kinds}"
        return None
    if isinstance(node, str) and node in _NAMED_TYPES:
        node = _NAMED_TYPES[node]
    kind = node if isinstance(node, str) else node["type"]
    if kind in _PRIMITIVES:
        valid = isinstance(datum, _PRIMITIVES[kind]) and not (kind != "boolean" and isinstance(datum, bool))
        return None if valid else f"field {path!r} has value {datum!r:.60}, expected {kind}"
    if kind == "record":
        if not isinstance(datum, Mapping):
            return f"field {path or node['name']!r} has value {datum!r:.60}, expected a record"
        for field in node["fields"]:
            child = f"{path}.{field['name']}" if path else field["name"]
            if field["name"] not in datum and "default" not in field:
                return f"field {child!r} is missing"
            problem = _problem(field["type"], datum.get(field["name"], field.get("default")), child)
            if problem:
                return problem
        return None
    if kind == "array":
        if not isinstance(datum, list):
            return f"field {path!r} has value {datum!r:.60}, expected a list"
        for index, item in enumerate(datum):
            problem = _problem(node["items"], item, f"{path}[{index}]")
            if problem:
                return problem
        return None
    if kind == "enum":
        return (
            None
            if datum in node["symbols"]
            else f"field {path!r} has value {datum!r}, expected one of {node['symbols']}"
        )
    return None  # types this project does not use are left to fastavro


def validate(name: str, record: Mapping[str, Any], parsed: Schema | None = None) -> None:
    """Raise SchemaError naming the first offending field if `record` breaks schema `name` (as
    `parsed` has it, this release's by default)."""
    parsed = parsed or schema(name)
    try:
        fastavro.validation.validate(record, parsed, raise_errors=True, strict=True)
    except ValidationError as error:
        raise SchemaError(f"{name} record is invalid: {_problem(parsed, record, '') or error}") from None
    _check_semantics(name, record)


def _check_semantics(name: str, record: Mapping[str, Any]) -> None:
    if name == "frame":
        has_image = record.get("image") is not None
        has_ref = record.get("image_ref") is not None
        if has_image == has_ref:
            raise SchemaError(
                "frame record is invalid: field 'image' or 'image_ref' must be set, not "
                + ("both" if has_image else "neither")
            )


@dataclass(frozen=True)
class Codec:
    """Encodes and decodes one schema's records in Avro binary."""

    name: str
    wire_format: WireFormat = WireFormat.SINGLE_OBJECT
    schema_id: int | None = None
    # The confluent wire format: the writer's schema by the id a record carries, where it is not
    # this codec's own (a producer of another release); None: such a record is refused, saying why.
    writer_schemas: Callable[[int], Schema] | None = None
    # The single-object format: write records with this released contract instead of this release's,
    # so that consumers of that release read them (a rolling upgrade).
    write_release: str | None = None
    contract: Contract | None = None  # default: this release's
    _written: Schema = dataclasses.field(init=False, repr=False, compare=False)  # the schema records are written with

    def __post_init__(self) -> None:
        if self.contract is None:
            object.__setattr__(self, "contract", this_release(self.name))  # fails fast on an unknown name
        if self.wire_format is WireFormat.CONFLUENT and self.schema_id is None:
            raise SchemaError(f"the confluent wire format needs a schema id for {self.name!r}")
        if self.write_release is not None and self.wire_format is not WireFormat.SINGLE_OBJECT:
            raise SchemaError("writing an older release's contract needs the single-object wire format")
        object.__setattr__(self, "_written", self._contract.schema_of(self.write_release))  # an unknown release fails

    @property
    def _contract(self) -> Contract:
        assert self.contract is not None  # set in __post_init__
        return self.contract

    def encode(self, record: Mapping[str, Any]) -> bytes:
        validate(self.name, record, self._contract.own)
        buffer = io.BytesIO()
        if self.wire_format is WireFormat.CONFLUENT:
            assert self.schema_id is not None
            buffer.write(_CONFLUENT_HEADER.pack(_CONFLUENT_MAGIC, self.schema_id))
        elif self.wire_format is WireFormat.SINGLE_OBJECT:
            buffer.write(_SINGLE_OBJECT_MARKER + fingerprint(self._written))
        fastavro.schemaless_writer(buffer, self._written, dict(record))  # a field the writer lacks is left out
        return buffer.getvalue()

    def _writer(self, schema_id: int) -> Schema:
        """The schema a confluent-framed record was written with: this codec's own, or another
        release's from the registry."""
        if schema_id == self.schema_id:
            return self._contract.own
        if self.writer_schemas is None:
            raise SchemaError(
                f"{self.name} record was written with schema id {schema_id}, this consumer's is {self.schema_id}: set "
                "PLATESTREAM_SCHEMA_REGISTRY_URL so that it reads the writer's schema"
            )
        return self.writer_schemas(schema_id)

    def _single_object_writer(self, print_: bytes) -> Schema | None:
        """The schema a single-object record names by its fingerprint; None for a plain Avro record
        read by a consumer of another format (its first bytes only look like the marker)."""
        known = self._contract.known
        if print_ in known:
            return known[print_][1]
        if self.wire_format is not WireFormat.SINGLE_OBJECT:
            return None
        releases = ", ".join(version for version, _ in known.values())
        raise SchemaError(
            f"{self.name} record was written with a schema this consumer does not know (fingerprint {print_.hex()};"
            f" it knows those of {releases}): a newer release wrote it, upgrade this consumer"
        )

    def decode(self, data: bytes) -> Record:
        """Decode one record; a truncated or foreign payload raises SchemaError."""
        if data is None:
            raise SchemaError(f"{self.name} record is empty (a tombstone)")
        buffer = io.BytesIO(data)
        own = writer = self._contract.own
        if data[:2] == _SINGLE_OBJECT_MARKER and len(data) >= _SINGLE_OBJECT_HEADER_SIZE:
            named = self._single_object_writer(data[2:_SINGLE_OBJECT_HEADER_SIZE])
            if named is not None:  # else plain Avro that happens to begin with the marker
                writer = named
                buffer.seek(_SINGLE_OBJECT_HEADER_SIZE)
        elif self.wire_format is WireFormat.CONFLUENT:
            header = buffer.read(_CONFLUENT_HEADER.size)
            if len(header) < _CONFLUENT_HEADER.size or header[0] != _CONFLUENT_MAGIC:
                raise SchemaError(f"{self.name} record lacks the confluent magic byte: {data[:8]!r}")
            writer = self._writer(_CONFLUENT_HEADER.unpack(header)[1])
        try:
            record = fastavro.schemaless_reader(buffer, writer, own)
        except (EOFError, StopIteration, ValueError, IndexError, UnicodeDecodeError, OverflowError,
                SchemaResolutionError) as error:  # fmt: skip
            raise SchemaError(
                f"{self.name} record of {len(data)} bytes cannot be decoded: {type(error).__name__}: {error}"
            ) from None
        if buffer.tell() != len(data):
            raise SchemaError(f"{self.name} record has {len(data) - buffer.tell()} trailing bytes after a valid record")
        if not isinstance(record, dict):
            raise SchemaError(f"{self.name} record decoded to {type(record).__name__}, not a record")
        _check_semantics(self.name, record)
        return record


def _drop_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _drop_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_drop_nulls(item) for item in value]
    return value


def _fields(name: str) -> list[dict[str, Any]]:
    parsed: Any = schema(name)
    fields: list[dict[str, Any]] = parsed["fields"]
    return fields


def _with_defaults(name: str, record: Mapping[str, Any]) -> Record:
    """Fill fields an OpenALPR producer leaves out (the agent fields) with their defaults."""
    filled = dict(record)
    for field in _fields(name):
        if field["name"] not in filled and "default" in field:
            filled[field["name"]] = field["default"]
    return filled


def to_json_dict(record: Mapping[str, Any]) -> Record:
    """The OpenALPR JSON shape of a record: unset optional fields are left out, bytes are base64."""
    shaped: Record = _drop_nulls(_jsonable(record))
    return shaped


# Fields OpenALPR and Rekor send as integers although Avro carries them as doubles.
_JSON_INTEGERS = frozenset({"region_confidence"})


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, Mapping):
        return {
            key: round(item) if key in _JSON_INTEGERS and isinstance(item, float) else _jsonable(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_jsonable(item) for item in value]
    return value


def to_json(record: Mapping[str, Any], *, indent: int | None = None) -> str:
    return json.dumps(to_json_dict(record), indent=indent)


def from_json(name: str, text: str | bytes | Mapping[str, Any]) -> Record:
    """Read OpenALPR JSON (text or parsed) into a record of schema `name`, validated."""
    parsed = json.loads(text) if isinstance(text, (str, bytes)) else dict(text)
    if not isinstance(parsed, dict):
        raise SchemaError(f"{name} JSON must be an object, got {type(parsed).__name__}")
    record = _with_defaults(name, parsed)
    unknown = set(record) - {field["name"] for field in _fields(name)}
    if unknown:
        raise SchemaError(f"{name} JSON has fields the schema does not know: {sorted(unknown)}")
    validate(name, record)
    # A round trip through Avro applies nested defaults and the schema's types.
    return Codec(name).decode(Codec(name).encode(record))
