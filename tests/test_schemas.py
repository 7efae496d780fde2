"""The contracts: OpenALPR's published JSON reads into our records and comes back the same."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from platestream.errors import ConfigError, SchemaError
from platestream.schemas import SCHEMA_NAMES, Codec, WireFormat, from_json, to_json_dict, validate
from tests.factories import SHARED, alert, alpr_group, alpr_results, dead_letter, frame, heartbeat

SEEDS = SHARED / "seeds"
EXAMPLES = Path(__file__).parent / "data" / "examples"  # our own records in the seeds' two forms
needs_seeds = pytest.mark.skipif(not SEEDS.is_dir(), reason=f"the seed documents are not at {SEEDS}")


def seed_json_blocks(path: Path) -> list[dict[str, Any]]:
    """The fenced JSON examples of a seed document, with its `# ...` remarks removed."""
    blocks = re.findall(r"```(?:json)?\n(.*?)```", path.read_text(), flags=re.DOTALL)
    parsed = []
    for block in blocks:
        cleaned = re.sub(r'(?m)(,|\{|\[|"|\d)\s+#[^\n]*$', r"\1", block)
        try:
            value = json.loads(cleaned)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict) and value.get("data_type") == "alpr_results":
            parsed.append(value)
    return parsed


OPENALPR_EXAMPLES = {
    "web service": SEEDS / "000_6fda98222c39bbe7.txt",
    "rekor scout agent": SEEDS / "004_2802f942be6c874d.txt",
}


def _round_trip(example: dict[str, Any]) -> dict[str, Any]:
    codec = Codec("alpr_results")
    return to_json_dict(codec.decode(codec.encode(from_json("alpr_results", example))))


@pytest.mark.parametrize("name", ["web_service_alpr_results.json", "agent_alpr_results.json"])
def test_records_in_the_openalpr_forms_round_trip_field_for_field(name: str) -> None:
    """The web service's form and the Rekor agent's, as their consumers parse them: same fields, same
    order, same types (integers stay integers), through Avro and back."""
    example = json.loads((EXAMPLES / name).read_text())
    back = _round_trip(example)
    assert back == example
    assert list(back) == list(example)
    assert json.dumps(back) == json.dumps(example)


def test_the_agent_form_keeps_types_a_consumer_relies_on() -> None:
    back = _round_trip(json.loads((EXAMPLES / "agent_alpr_results.json").read_text()))
    assert isinstance(back["camera_id"], int)
    assert back["error"] is False
    assert isinstance(back["results"][0]["region_confidence"], int)
    assert back["results"][0]["vehicle_region"] == {"x": 1620, "y": 640, "width": 700, "height": 700}
    assert back["results"][0]["candidates"][1] == {"plate": "NXR447I", "confidence": 80.4410934448242,
                                                   "matches_template": 0}  # fmt: skip


@needs_seeds
@pytest.mark.parametrize("source", sorted(OPENALPR_EXAMPLES))
def test_openalpr_examples_round_trip_through_avro(source: str) -> None:
    examples = seed_json_blocks(OPENALPR_EXAMPLES[source])
    assert examples, f"no alpr_results example found in {OPENALPR_EXAMPLES[source].name}"
    codec = Codec("alpr_results")
    for example in examples:
        record = from_json("alpr_results", example)
        back = to_json_dict(codec.decode(codec.encode(record)))
        assert back == example
        assert list(back) == [key for key in record if key in example]


@needs_seeds
def test_agent_example_keeps_types_a_consumer_relies_on() -> None:
    (example,) = seed_json_blocks(OPENALPR_EXAMPLES["rekor scout agent"])
    back = to_json_dict(Codec("alpr_results").decode(Codec("alpr_results").encode(from_json("alpr_results", example))))
    assert back["camera_id"] == 1234
    assert isinstance(back["camera_id"], int)
    assert back["error"] is False
    assert back["results"][0]["vehicle_region"] == {"x": 3042, "y": 0, "width": 630, "height": 630}
    assert back["results"][1]["candidates"][0] == {
        "plate": "CG3L5Y",
        "confidence": 94.7376327514648,
        "matches_template": 1,
    }


@pytest.mark.parametrize(
    ("name", "record"),
    [("frame", frame()), ("alpr_results", alpr_results()), ("alpr_group", alpr_group()),
     ("heartbeat", heartbeat()), ("dead_letter", dead_letter())],
)  # fmt: skip
def test_every_schema_round_trips_in_each_wire_format(name: str, record: dict[str, Any]) -> None:
    from platestream.schemas.codec import fingerprint, schema

    for codec in (Codec(name), Codec(name, WireFormat.AVRO), Codec(name, WireFormat.CONFLUENT, schema_id=7)):
        assert codec.decode(codec.encode(record)) == record
    framed = Codec(name, WireFormat.CONFLUENT, schema_id=7).encode(record)
    assert framed[:5] == b"\x00\x00\x00\x00\x07"
    single = Codec(name).encode(record)
    assert single[:10] == b"\xc3\x01" + fingerprint(schema(name))
    assert single[10:] == Codec(name, WireFormat.AVRO).encode(record)
    assert Codec(name, WireFormat.AVRO).decode(single) == record  # a consumer of either format reads both
    assert Codec(name).decode(Codec(name, WireFormat.AVRO).encode(record)) == record


def test_the_single_object_fingerprint_is_avros() -> None:
    """The Avro specification's CRC-64-AVRO of the schema "null" is 0x63dd24e7cc258f8a, written
    little-endian: what a Java or Rust Avro library writes and expects."""
    import fastavro

    from platestream.schemas.codec import fingerprint

    assert fingerprint(fastavro.parse_schema("null")).hex() == "8a8f25cce724dd63"


def test_every_schema_field_is_documented() -> None:
    from platestream.schemas.codec import _read_json

    def fields(node: Any) -> list[tuple[str, Any]]:
        found = []
        if isinstance(node, dict):
            if node.get("type") == "record":
                found += [(f"{node['name']}.{f['name']}", f) for f in node["fields"]]
            for value in node.values():
                found += fields(value)
        elif isinstance(node, list):
            for value in node:
                found += fields(value)
        return found

    for name in (*SCHEMA_NAMES, "common"):
        for path, field in fields(_read_json(f"{name}.avsc")):
            assert field.get("doc"), f"{name}.avsc: {path} has no doc"


def test_a_record_that_breaks_the_schema_names_the_field() -> None:
    record = alpr_results()
    record["results"][0]["confidence"] = "high"
    with pytest.raises(SchemaError, match=r"results\[0\]\.confidence. has value .high."):
        Codec("alpr_results").encode(record)


def test_a_missing_required_field_is_named() -> None:
    record = frame()
    del record["capture_time_ms"]
    with pytest.raises(SchemaError, match="capture_time_ms"):
        validate("frame", record)


def test_openalpr_json_with_an_unknown_field_is_rejected() -> None:
    with pytest.raises(SchemaError, match="plate_colour"):
        from_json("alpr_results", to_json_dict(alpr_results()) | {"plate_colour": "red"})


@pytest.mark.parametrize(
    ("image", "ref", "word"), [(b"jpeg", {"bucket": "b", "key": "k"}, "both"), (None, None, "neither")]
)
def test_a_frame_carries_exactly_one_image_source(image: bytes | None, ref: dict[str, str] | None, word: str) -> None:
    record = frame() | {"image": image, "image_ref": ref}
    with pytest.raises(SchemaError, match=f"not {word}"):
        Codec("frame").encode(record)


@pytest.mark.parametrize(
    "payload",
    [b"", b"\x02", b"\xff" * 3, b"not avro at all, just some text that is long enough"],
)
def test_undecodable_bytes_raise_a_schema_error(payload: bytes) -> None:
    with pytest.raises(SchemaError, match="alpr_results record"):
        Codec("alpr_results").decode(payload)


def test_confluent_payload_without_magic_byte_is_rejected() -> None:
    plain = Codec("frame").encode(frame())
    with pytest.raises(SchemaError, match="magic byte"):
        Codec("frame", WireFormat.CONFLUENT, schema_id=1).decode(b"\x01" + plain)


SAMPLES: dict[str, dict[str, Any]] = {
    "frame": frame(),
    "alpr_results": alpr_results(),
    "alpr_group": alpr_group(),
    "heartbeat": heartbeat(),
    "dead_letter": dead_letter(),
    "aggregator_state": {"source_topic": "alpr_results", "source_partition": 3, "next_offset": 42,
                         "state_json": "{}", "state_version": 1, "time_ms": 1_700_000_000_000},
    "alerts": alert(),
    "producer_checkpoint": {"backfill_id": "b1", "source": "s3://archive/cams/", "last_key": "cams/1/a.jpg",
                            "objects_produced": 10, "done": False, "time_ms": 1_700_000_000_000},
}  # fmt: skip


def _resolve(record: dict[str, Any], writer: Any, reader: Any) -> Any:
    import io

    import fastavro

    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, writer, record)
    buffer.seek(0)
    return fastavro.schemaless_reader(buffer, writer, reader)


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_each_contract_reads_and_is_read_by_the_last_release(name: str) -> None:
    """Producers and consumers are upgraded at different times: the current contract reads what
    the last release wrote (backward) and the last release reads what the current one writes
    (forward), by Avro's schema resolution. A change that breaks either fails here."""
    from platestream.schemas.codec import released_schema, released_versions, schema

    last = released_versions()[-1]
    old, new = released_schema(last, name), schema(name)
    record = SAMPLES[name]
    assert _resolve(record, old, new) is not None
    assert _resolve(record, new, old) is not None


def test_a_changed_contract_ships_as_a_new_release_beside_the_old() -> None:
    """The released/ folder keeps every release's .avsc as shipped: once the contracts differ from
    the last release's, the version must move on and its own copy be added."""
    import tomllib
    from importlib import resources

    from platestream.schemas.codec import RELEASED, released_versions

    version = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())["project"]["version"]
    last = released_versions()[-1]
    package = resources.files("platestream.schemas")
    for name in (*SCHEMA_NAMES, "common"):
        current = json.loads(package.joinpath(f"{name}.avsc").read_text())
        shipped = json.loads(package.joinpath(f"{RELEASED}/{last}/{name}.avsc").read_text())
        if current != shipped:
            assert last == version, f"{name}.avsc changed since {last}: release it as released/{version}/"


def test_a_consumer_of_the_last_release_reads_a_record_with_a_field_added_and_the_reverse() -> None:
    """What a compatible change looks like: a field added with a default. The consumer of the last
    release skips it; the new consumer fills it in when it reads the old record."""
    import copy

    import fastavro

    from platestream.schemas.codec import _named_schemas, _read_json, released_schema

    raw = copy.deepcopy(_read_json("heartbeat.avsc"))
    raw["fields"].append({"name": "gpu_usage_percent", "type": ["null", "double"], "default": None, "doc": "GPU."})
    next_release = fastavro.parse_schema(raw, named_schemas=dict(_named_schemas()))
    last = released_schema("0.1.0", "heartbeat")
    newer = SAMPLES["heartbeat"] | {"gpu_usage_percent": 41.5}
    assert "gpu_usage_percent" not in _resolve(newer, next_release, last)
    assert _resolve(SAMPLES["heartbeat"], last, next_release)["gpu_usage_percent"] is None


def _next_release(name: str = "heartbeat") -> Any:
    """A contract as a next release might ship it: `name` with a field added, with its default."""
    import copy

    import fastavro

    from platestream.schemas.codec import Contract, _named_schemas, _read_json, fingerprint, this_release

    raw = copy.deepcopy(_read_json(f"{name}.avsc"))
    raw["fields"].append({"name": "gpu_usage_percent", "type": ["null", "double"], "default": None, "doc": "GPU."})
    parsed = fastavro.parse_schema(raw, named_schemas=dict(_named_schemas()))
    known = dict(this_release(name).known) | {fingerprint(parsed): ("next", parsed)}
    return Contract("next", parsed, known)


def test_single_object_records_of_the_next_release_and_of_this_one_are_read_by_both() -> None:
    """Without a registry: every record names its writer's schema by fingerprint. The next release
    reads this one's records (it ships this release's contract), and while consumers of this
    release remain, its producers write this release's contract, which those consumers read."""
    from platestream.schemas.codec import released_versions

    nxt = _next_release()
    record = SAMPLES["heartbeat"]
    newer = record | {"gpu_usage_percent": 41.5}
    this = Codec("heartbeat")
    assert Codec("heartbeat", contract=nxt).decode(this.encode(record)) == record | {"gpu_usage_percent": None}
    rolling = Codec("heartbeat", contract=nxt, write_release=released_versions()[-1])
    assert this.decode(rolling.encode(newer)) == record  # its new field left out
    assert Codec("heartbeat", contract=nxt).decode(rolling.encode(newer)) == record | {"gpu_usage_percent": None}
    written_by_next = Codec("heartbeat", contract=nxt).encode(newer)
    assert Codec("heartbeat", contract=nxt).decode(written_by_next) == newer
    with pytest.raises(SchemaError, match=r"does not know .* upgrade this consumer"):
        this.decode(written_by_next)


def test_writing_an_older_contract_names_a_release_that_exists() -> None:
    from platestream.settings import Settings, load

    with pytest.raises(SchemaError, match=r"no released contract '0\.0\.1'"):
        Codec("heartbeat", write_release="0.0.1")
    with pytest.raises(ConfigError, match=r"PLATESTREAM_WRITE_SCHEMA_RELEASE: no released contract '0\.0\.1'"):
        load(Settings, write_schema_release="0.0.1")
    with pytest.raises(SchemaError, match="needs the single-object wire format"):
        Codec("heartbeat", WireFormat.AVRO, write_release="0.1.0")


@pytest.fixture
def registry_url() -> Any:
    """A Schema Registry's one read endpoint, `GET /schemas/ids/{id}`, serving the schemas it is given."""
    import http.server
    import threading

    served: dict[int, str] = {}

    class Registry(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            schema_id = int(self.path.rsplit("/", 1)[-1])
            body = json.dumps({"schema": served[schema_id]}).encode() if schema_id in served else b"{}"
            self.send_response(200 if schema_id in served else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Registry)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", served
    server.shutdown()


def test_a_consumer_reads_records_of_another_release_by_their_writer_schema_from_the_registry(
    registry_url: Any,
) -> None:
    import copy
    import io
    import struct

    import fastavro

    from platestream.schemas.codec import _named_schemas, _read_json, schema_json
    from platestream.schemas.registry import SchemaRegistry
    from platestream.settings import Settings, load

    url, served = registry_url
    raw = copy.deepcopy(_read_json("heartbeat.avsc"))
    raw["fields"].append({"name": "gpu_usage_percent", "type": ["null", "double"], "default": None, "doc": "GPU."})
    next_release = fastavro.parse_schema(raw, named_schemas=dict(_named_schemas()))
    registered = json.loads(schema_json("heartbeat"))  # as the next release would register it
    registered["fields"].append(raw["fields"][-1])
    served[8] = json.dumps(registered)
    served[7] = schema_json("heartbeat")
    buffer = io.BytesIO()
    buffer.write(struct.pack(">bI", 0, 8))
    fastavro.schemaless_writer(buffer, next_release, SAMPLES["heartbeat"] | {"gpu_usage_percent": 41.5})
    newer = buffer.getvalue()

    from platestream.kafka import codec

    settings = load(Settings, wire_format="confluent", schema_ids="heartbeat=7", schema_registry_url=url)
    consumer = codec(settings, "heartbeat")
    assert consumer.decode(newer) == SAMPLES["heartbeat"]  # the next release's record, its new field skipped
    own = Codec("heartbeat", WireFormat.CONFLUENT, schema_id=7)
    assert consumer.decode(own.encode(SAMPLES["heartbeat"])) == SAMPLES["heartbeat"]

    without = Codec("heartbeat", WireFormat.CONFLUENT, schema_id=7)
    with pytest.raises(SchemaError, match="written with schema id 8, this consumer's is 7: set PLATESTREAM_SCHEMA"):
        without.decode(newer)
    unknown = newer[:1] + struct.pack(">I", 99) + newer[5:]
    with pytest.raises(SchemaError, match="the schema registry has no schema 99"):
        Codec("heartbeat", WireFormat.CONFLUENT, 7, writer_schemas=SchemaRegistry(url).schema).decode(unknown)
    with pytest.raises(SchemaError, match="did not give schema 8"):
        Codec("heartbeat", WireFormat.CONFLUENT, 7, writer_schemas=SchemaRegistry("http://127.0.0.1:9").schema).decode(
            newer
        )
