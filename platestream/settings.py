"""Typed, frozen settings, read in one place: CLI flag > environment (PLATESTREAM_*) > file > default.

The optional file is TOML, named by PLATESTREAM_CONFIG (or --config); its keys are the field names.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from platestream.errors import ConfigError

ENV_PREFIX = "PLATESTREAM_"
CONFIG_ENV = ENV_PREFIX + "CONFIG"


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


COUNTRIES = ("us", "eu", "br")


def check_country(value: str | None) -> str | None:
    """One of COUNTRIES, lower-cased; a comma list or an unknown country is refused, saying why."""
    if value is None:
        return None
    country = value.strip().lower()
    if "," in country:
        raise ValueError(
            f"one country per service, got {value!r}: us, eu or br (the HTTP APIs take comma lists, one pass each)"
        )
    if country not in COUNTRIES:
        raise ValueError(f"country {value!r} is not supported: use us, eu or br")
    return country


def check_state(value: str | None) -> str | None:
    """A region the engine has plate forms for: a US state (md, us-md) or an EU country (fr)."""
    if value is None or not value.strip():
        return None
    from platestream.workers.engine.templates import TEMPLATES

    state = value.strip().lower()
    known = {code for regions in TEMPLATES.values() for region in regions for code in (region, region[3:]) if code}
    if state not in known:
        raise ValueError(f"state {value!r} has no plate forms here: use a US state (md) or an EU country (fr)")
    return state


@cache  # read for each group closed: parse each value once
def parse_camera_gps(value: str) -> dict[str, tuple[float, float]]:
    """'12=52.37,4.89;gate-2=52.38,4.90' as {camera: (latitude, longitude)}, each checked."""
    positions: dict[str, tuple[float, float]] = {}
    for entry in filter(None, (part.strip() for part in value.split(";"))):
        camera, _, where = entry.partition("=")
        try:
            latitude, longitude = (float(number) for number in where.split(","))
        except ValueError:
            raise ValueError(f"camera position {entry!r} is not CAMERA=LATITUDE,LONGITUDE") from None
        if not camera.strip() or not (-90 <= latitude <= 90 and -180 <= longitude <= 180):
            raise ValueError(f"camera position {entry!r}: latitude -90..90 and longitude -180..180 after a camera id")
        positions[camera.strip()] = (latitude, longitude)
    return positions


class Settings(BaseSettings):
    """Settings every service shares: where Kafka is, how records look, how to log."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="forbid")

    kafka_bootstrap: str | None = Field(
        None,
        description="Kafka bootstrap servers (host:port,...). Unset: the local broker of `platestream broker start`.",
    )
    kafka_connect_timeout_ms: int = Field(
        30000, ge=100, description="How long to try reaching the cluster before failing with an error."
    )
    kafka_request_timeout_ms: int = Field(
        30000, ge=1000, description="How long a client waits for the broker to answer one request."
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="Kafka security protocol."
    )
    kafka_sasl_mechanism: str | None = Field(None, description="SASL mechanism, e.g. SCRAM-SHA-512.")
    kafka_sasl_username: str | None = Field(None, description="SASL user name.")
    kafka_sasl_password: SecretStr | None = Field(None, description="SASL password (never printed).")
    kafka_ssl_cafile: Path | None = Field(
        None,
        description="CA certificate (PEM) that TLS brokers' certificates are checked against; unset: the system's.",
    )
    topic_prefix: str = Field("", description="Prefix of every topic name, e.g. 'prod.'.")
    wire_format: Literal["single-object", "avro", "confluent"] = Field(
        "single-object",
        description="Record framing: Avro single-object encoding (the writer schema's fingerprint first), plain"
        " Avro binary (the 0.1.0 default), or the Confluent Schema Registry wire format.",
    )
    write_schema_release: str | None = Field(
        None,
        description="Single-object format: write records with this released contract (e.g. 0.1.0) instead of this"
        " release's, while consumers of that release remain.",
    )
    schema_ids: str = Field(
        "", description="For the confluent wire format: registry ids per schema, e.g. 'frame=1,alpr_results=2'."
    )
    schema_registry_url: str | None = Field(
        None, description="Schema Registry that records of other schema ids are read by (confluent wire format)."
    )
    state_dir: Path = Field(
        Path(".platestream"), description="Folder for local state: the local broker, checkpoints, stores."
    )
    log_level: str = Field("INFO", description="Log level: DEBUG, INFO, WARNING, ERROR.")
    log_format: Literal["auto", "json", "console"] = Field(
        "auto", description="Log lines as JSON, or readable for a terminal; auto picks by the terminal."
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get(CONFIG_ENV)
        if config_file:
            if not Path(config_file).is_file():
                raise ConfigError(f"{CONFIG_ENV}={config_file!r} is not a readable file")
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config_file))
        return tuple(sources)

    @property
    def broker_dir(self) -> Path:
        return self.state_dir / "broker"

    @field_validator("write_schema_release")
    @classmethod
    def _released(cls, value: str | None) -> str | None:
        from platestream.schemas.codec import released_versions

        if value is not None and value not in released_versions():
            raise ValueError(f"no released contract {value!r}; released: {', '.join(released_versions())}")
        return value

    def topic_name(self, declared: str) -> str:
        return self.topic_prefix + declared

    def schema_id(self, schema: str) -> int | None:
        for pair in filter(None, (item.strip() for item in self.schema_ids.split(","))):
            name, _, value = pair.partition("=")
            if name.strip() == schema:
                try:
                    return int(value)
                except ValueError:
                    raise ConfigError(f"schema id of {schema!r} is not a number: {value!r}") from None
        return None


S = TypeVar("S", bound=Settings)


def _message(item: Any) -> str:
    """pydantic's message, without the "Value error, " it puts before our own validators' words."""
    return str(item["msg"]).removeprefix("Value error, ")


def load(cls: type[S], **overrides: Any) -> S:
    """Build settings of `cls`, turning pydantic's report into a ConfigError naming the variable."""
    try:
        return cls(**{key: value for key, value in overrides.items() if value is not None})
    except ValidationError as error:
        problems = "; ".join(
            f"--{str(item['loc'][0]).replace('_', '-')} / {env_name(str(item['loc'][0]))}: "
            + ("is required" if item["type"] == "missing" else f"{_message(item)} (got {item.get('input')!r})")
            if item["loc"]
            else _message(item)
            for item in error.errors()
        )
        raise ConfigError(f"invalid settings: {problems}") from None


class EngineSettings(Settings):
    """How plates are recognised: engine, models, defaults of a request, input limits."""

    engine: Literal["default", "openalpr"] = Field("default", description="Recognition engine.")
    reader: Literal["ppocr", "ppocr-head", "platestream"] = Field(
        "ppocr-head",
        description="Default engine's plate reader: PP-OCR with the project's plate head (its two "
        "distributions mixed; US plates with a head of their own, PP-OCR's whole reader tuned on plates), "
        "PP-OCR alone, or the project's own whole-plate model.",
    )
    country: str = Field("us", description="Default country: us, eu or br (OpenALPR's country).")
    state: str | None = Field(None, description="Default state / country pattern, e.g. md or fr.")
    topn: int = Field(10, ge=1, le=1000, description="Candidates per plate.")
    detector_size: int = Field(
        320, ge=160, le=1280, multiple_of=32, description="Plate detector input: a frame's longer side, in pixels."
    )
    detector_second_look: int = Field(
        960, ge=0, le=1920, multiple_of=32,
        description="Frames where no plate was read from a sure box at detector_size are looked at again at "
        "this size (far plates); 0: never.",
    )  # fmt: skip
    engine_threads: int = Field(1, ge=1, description="Threads per model inference.")
    gpu: bool = Field(False, description="Use the CUDA execution provider when present.")
    max_image_bytes: int = Field(25 * 1024 * 1024, ge=1, description="Larger encoded images are rejected.")
    max_image_pixels: int = Field(40_000_000, ge=1, description="Images with more pixels are rejected before decoding.")
    openalpr_config: str = Field("/etc/openalpr/openalpr.conf", description="OpenALPR engine: its config file.")
    openalpr_runtime_data: str = Field(
        "/usr/share/openalpr/runtime_data", description="OpenALPR engine: its runtime_data folder."
    )

    @model_validator(mode="after")
    def _known_region(self) -> EngineSettings:
        """The default engine has plate forms for us, eu and br and their regions; OpenALPR's
        countries are its runtime data's, which it checks itself."""
        if self.engine == "default":
            check_country(self.country)
            check_state(self.state)
        elif "," in self.country:
            raise ValueError(f"one country per service, got {self.country!r}")
        return self

    @model_validator(mode="after")
    def _second_look_larger(self) -> EngineSettings:
        if self.detector_second_look and self.detector_second_look <= self.detector_size:
            raise ValueError(
                f"detector_second_look ({self.detector_second_look}) must be larger than detector_size "
                f"({self.detector_size}), or 0 for none"
            )
        return self


class ServiceSettings(Settings):
    """What every long-running service that consumes and commits shares: riding out a broker that
    goes away, and when to tell Kubernetes it is stuck."""

    transactional_id: str | None = Field(
        None,
        description="Transactional id, stable per replica (a StatefulSet pod name); unset: <service>-<hostname>.",
    )
    transaction_timeout_ms: int = Field(
        30000, ge=1000, description="Open transactions of a dead instance end after this; no step waits longer."
    )
    session_timeout_ms: int = Field(10000, ge=6000, description="Kafka group session timeout.")
    kafka_retry_backoff_max_ms: int = Field(
        5000, ge=100, description="Longest wait between attempts to reconnect after a failed transaction."
    )
    stalled_partition_s: float = Field(
        60.0, gt=0, description="Records waiting unread this long in an owned partition: its fetching is reset."
    )
    stall_not_ready_s: float = Field(
        60.0, gt=0, description="No progress this long with input waiting: /readyz answers 503."
    )
    stall_not_alive_s: float = Field(
        300.0, gt=0, description="No progress this long with input waiting: /healthz answers 503 (a restart)."
    )
    progress_log_s: float = Field(
        60.0, ge=0, description="A progress line (totals and rates) in the log this often while working; 0: none."
    )


class WorkerSettings(EngineSettings, ServiceSettings):
    """The recognition worker: consume frames, emit alpr_results, transactionally."""

    group_id: str = Field("platestream-workers", description="Consumer group of the workers.")
    batch_size: int = Field(8, ge=1, le=1000, description="Frames per engine batch and transaction.")
    batch_wait_ms: int = Field(200, ge=0, description="Longest wait to fill a batch.")
    decode_threads: int = Field(2, ge=1, description="Threads that fetch and decode images.")
    emit_empty: bool = Field(True, description="Emit a result for frames with no plate (False: as OpenALPR agents).")
    agent_uid: str | None = Field(
        None, description="Agent uid in results and heartbeats; unset: a 40-hex id derived from the hostname."
    )
    company_id: str | None = Field(None, description="Company id written into results (Rekor: a UUID).")
    plate_crop_jpeg: bool = Field(
        False,
        description="Attach each plate's crop to its result as base64 JPEG (plate_crop_jpeg), as Rekor agents can.",
    )
    vehicle_crop_jpeg: bool = Field(
        False,
        description="Attach each plate's vehicle (its vehicle_region, at most 480 px a side) as base64 JPEG"
        " (vehicle_crop_jpeg); groups carry their best read's.",
    )
    health_port: int = Field(8080, ge=0, le=65535, description="Port of /healthz, /readyz and /metrics; 0: off.")
    heartbeat_interval_s: float = Field(60.0, gt=0, description="Seconds between heartbeat records.")
    max_poll_interval_ms: int = Field(300000, ge=10000, description="Longest time between polls before a rebalance.")
    s3_endpoint_url: str | None = Field(None, description="S3-compatible endpoint (MinIO, a local server); unset: AWS.")
    s3_region: str | None = Field(None, description="S3 region.")
    s3_max_attempts: int = Field(4, ge=1, description="Attempts per S3 request, with backoff, on transient errors.")
    s3_timeout_s: float = Field(10.0, gt=0, description="Connect and read timeout of one S3 request.")


class ApiSettings(EngineSettings):
    """`platestream serve`: the HTTP recognition API (OpenALPR web service and Cloud, Plate Recognizer)."""

    api_mode: Literal["local", "pipeline"] = Field(
        "local",
        description="local: engines in the server; pipeline: requests go to the workers as frames, replies"
        " come back from alpr_replies.",
    )
    api_camera_results: bool = Field(
        False,
        description="local mode: a request naming a camera (Plate Recognizer's camera_id) also goes to"
        " alpr_results, so the aggregator makes vehicle passes of it (needs Kafka).",
    )
    api_host: str = Field("0.0.0.0", description="Address the API listens on.")
    api_port: int = Field(8080, ge=0, le=65535, description="Port of the API (and its /healthz, /readyz, /metrics).")
    api_tokens: SecretStr | None = Field(
        None, description="Comma-separated tokens / secret keys a request must carry (never printed)."
    )
    api_tokens_file: Path | None = Field(None, description="File of tokens, one per line (a mounted Secret).")
    api_no_auth: bool = Field(False, description="Serve without tokens: only for a lab machine.")
    api_engines: int = Field(1, ge=1, description="Engines recognising in parallel (one core each).")
    api_queue_size: int = Field(32, ge=1, description="Requests waiting for an engine; beyond: 429 with Retry-After.")
    api_max_batch: int = Field(8, ge=1, description="Images recognised together when requests arrive together.")
    api_timeout_s: float = Field(30.0, gt=0, description="Longest a request waits for its result; then 504.")
    api_rate_limit_per_minute: int = Field(
        600, ge=0, description="Requests per token per minute (X-RateLimit-* headers); 0: no limit."
    )
    api_monthly_calls: int = Field(
        0, ge=0, description="Calls (credits) per token per month; 0: no limit (usage counts from the start)."
    )
    api_image_url_hosts: str = Field(
        "", description="Hosts `image_url` may fetch from, comma-separated; empty: image_url is refused."
    )
    api_image_url_private: bool = Field(
        False, description="Let image_url reach loopback, private and link-local addresses."
    )
    api_image_url_timeout_s: float = Field(10.0, gt=0, description="Timeout of an image_url fetch.")


class ProducerSettings(Settings):
    """Producers: where frames come from and what they ask of the workers."""

    camera_id: str | None = Field(None, description="Camera id of the frames; unset: the image's folder name.")
    country: str | None = Field(None, description="Country the workers should read the plates with.")
    state: str | None = Field(None, description="State or country pattern the workers should prefer.")
    max_image_bytes: int = Field(25 * 1024 * 1024, ge=1, description="Larger files are skipped with an error.")

    @field_validator("country")
    @classmethod
    def _one_country(cls, value: str | None) -> str | None:
        if value is not None and "," in value:
            raise ValueError(f"one country per producer, got {value!r}: us, eu or br")
        return value.strip().lower() if value else None


class AggregatorSettings(ServiceSettings):
    """The aggregator: alpr_results in, one alpr_group per vehicle pass out (reference defaults)."""

    group_id: str = Field("platestream-aggregator", description="Consumer group of the aggregators.")
    batch_size: int = Field(500, ge=1, description="Results per transaction.")
    batch_wait_ms: int = Field(200, ge=0, description="Longest wait to fill a batch.")
    plate_groups_time_delta_ms: int = Field(4500, ge=0, description="How long a group waits for another similar read.")
    plate_groups_min_plates_to_group: int = Field(2, ge=1, description="Fewer reads than this make no group.")
    plate_groups_min_confidence: float = Field(80.0, ge=0, le=100, description="Reads below this are not grouped.")
    plate_groups_max_plates_to_group: int = Field(500, ge=1, description="A group is sent once it has this many reads.")
    plate_groups_max_delay_to_send: int = Field(7500, ge=0, description="Latest a group is sent after its last read.")
    plate_groups_span_cameras: bool = Field(False, description="Let reads of different cameras join one group.")
    group_lateness_ms: int = Field(2000, ge=0, description="How late (capture time) a read may arrive and still join.")
    idle_flush_ms: int = Field(
        10000, ge=0, description="Close a partition's open groups after this long (wall time) without reads; 0: never."
    )
    country: str | None = Field(None, description="Country written into groups.")
    camera_gps: str = Field(
        "", description="Cameras' positions for groups' gps_latitude/gps_longitude: 'CAMERA=LAT,LON;...' (degrees)."
    )
    topn: int = Field(10, ge=1, description="Candidates per group.")

    @field_validator("camera_gps")
    @classmethod
    def _camera_gps(cls, value: str) -> str:
        parse_camera_gps(value)  # refused here, with the entry at fault, rather than when a group closes
        return value

    def gps_of(self, camera_id: int | str) -> tuple[float, float] | None:
        return parse_camera_gps(self.camera_gps).get(str(camera_id))

    health_port: int = Field(8081, ge=0, le=65535, description="Port of /healthz, /readyz and /metrics; 0: off.")


class StoreLocation(Settings):
    """Where the vehicle passes are kept: what `platestream search` reads and the store writer writes."""

    sqlite_path: Path | None = Field(
        None, description="SQLite file of groups for `platestream search`; unset: <state dir>/platestream.db."
    )
    postgres_dsn: SecretStr | None = Field(
        None, description="PostgreSQL connection string; when set, groups go there instead of SQLite."
    )

    @property
    def database(self) -> Path:
        return self.sqlite_path or self.state_dir / "platestream.db"


class StoreSettings(ServiceSettings, StoreLocation):
    """Where alpr_group records are kept for people and data lakes."""

    group_id: str = Field("platestream-store", description="Consumer group of the store writers.")
    health_port: int = Field(8082, ge=0, le=65535, description="Port of /healthz, /readyz and /metrics; 0: off.")
    jsonl_target: str | None = Field(
        None, description="Folder or s3://bucket/prefix for JSON-lines files by date and camera; unset: none."
    )
    batch_size: int = Field(200, ge=1, description="Groups per write.")
    s3_endpoint_url: str | None = Field(None, description="S3-compatible endpoint for jsonl_target; unset: AWS.")
    image_max_bytes: int = Field(
        262144, ge=0, description="Most bytes of crops kept per pass (plate + vehicle; the vehicle's goes first)."
    )
    image_retention_days: float = Field(
        30.0, ge=0, description="Days a pass's crops are kept (the pass itself stays); 0: for ever."
    )


class ConsoleSettings(StoreLocation):
    """`platestream console`: the web pages of vehicle passes, search, cameras and alert lists."""

    console_host: str = Field("127.0.0.1", description="Address the console listens on (0.0.0.0 in a container).")
    console_port: int = Field(8090, ge=1, le=65535, description="Port of the console.")
    console_session_secret: SecretStr | None = Field(
        None,
        description="Key that signs login cookies (32+ random characters, the same on every replica); unset: a"
        " new one per start, which logs everyone out on restart.",
    )
    console_secure_cookies: bool = Field(
        False, description="Send the login cookie over HTTPS only (set behind TLS, as in production)."
    )
    console_session_hours: float = Field(12.0, gt=0, description="A login lasts this long.")
    console_heartbeat_stale_s: float = Field(
        180.0, gt=0, description="A camera agent whose last heartbeat is older is shown as not streaming."
    )
    console_lag_groups: str = Field(
        "workers=platestream-workers,aggregator=platestream-aggregator,store=platestream-store,"
        "alerts=platestream-alerts",
        description="The consumer groups whose lag the cameras page shows: 'STAGE=GROUP_ID,...' (the services'"
        " default group ids; set it when yours differ).",
    )

    def lag_groups(self) -> list[tuple[str, str]]:
        pairs = [item.strip().partition("=") for item in self.console_lag_groups.split(",") if item.strip()]
        return [(stage.strip(), group.strip()) for stage, _, group in pairs if group.strip()]


class AlertSettings(ServiceSettings, StoreLocation):
    """`platestream alerts`: each vehicle pass matched against the alert lists kept in the store."""

    group_id: str = Field("platestream-alerts", description="Consumer group of the alert matchers.")
    health_port: int = Field(8084, ge=0, le=65535, description="Port of /healthz, /readyz and /metrics; 0: off.")
    batch_size: int = Field(200, ge=1, description="Groups per poll and transaction.")


class WebhookSettings(ServiceSettings):
    """`platestream webhooks`: each alpr_group (or alert) POSTed to URLs, in its own consumer group."""

    group_id: str = Field("platestream-webhooks", description="Consumer group of the webhook senders.")
    webhook_source: Literal["alpr_group", "alerts"] = Field(
        "alpr_group", description="The topic whose records are POSTed: vehicle passes, or alerts (own group id)."
    )
    health_port: int = Field(8083, ge=0, le=65535, description="Port of /healthz, /readyz and /metrics; 0: off.")
    webhook_urls: str = Field(..., min_length=1, description="Comma-separated URLs that each group is POSTed to.")
    webhook_attempts: int = Field(4, ge=1, description="Attempts per delivery, with exponential backoff.")
    webhook_backoff_s: float = Field(0.5, gt=0, description="First wait between attempts; it doubles each time.")
    webhook_timeout_s: float = Field(10.0, gt=0, description="Timeout of one attempt.")
    webhook_concurrency: int = Field(8, ge=1, le=256, description="Deliveries in flight at once.")
    webhook_include_crop: bool = Field(False, description="Keep the plate and vehicle crops in webhook payloads.")
    batch_size: int = Field(50, ge=1, description="Groups per poll and transaction.")

    @field_validator("webhook_urls")
    @classmethod
    def _http_urls(cls, value: str) -> str:
        for url in (part.strip() for part in value.split(",")):
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"webhook URL {url!r} is not http:// or https://")
        return value

    @property
    def urls(self) -> list[str]:
        return [url.strip() for url in self.webhook_urls.split(",") if url.strip()]


class CheckpointedSettings(ProducerSettings):
    """Producers that send in transactions with checkpoints (resumable): how fast, how much at once."""

    rate: float = Field(0.0, ge=0, description="Most frames per second; 0: as fast as the broker takes them.")
    batch_size: int = Field(500, ge=1, description="Frames per transaction (and checkpoint).")
    batch_max_s: float = Field(
        5.0, gt=0, description="A transaction (and checkpoint) at least this often, however few frames are in it."
    )


class FilesSettings(CheckpointedSettings):
    """`produce files`: plain sends, or, given a checkpoint id, transactions with checkpoints."""

    batch_size: int = Field(50, ge=1, description="Frames per transaction (and checkpoint); images are inline.")

    checkpoint_id: str | None = Field(
        None,
        description="Send in transactions, each with a checkpoint under this name: run again with the same "
        "name after a crash, it goes on after the last file committed (a finished run sends nothing); "
        "unset: plain sends.",
    )


class BackfillSettings(CheckpointedSettings):
    """An S3 backfill: which objects, and how to name their cameras and times."""

    suffixes: str = Field(".jpg,.jpeg,.png", description="Comma-separated key suffixes to take (case-insensitive).")
    modified_after: str | None = Field(None, description="Only objects modified after this ISO date/time.")
    modified_before: str | None = Field(None, description="Only objects modified before this ISO date/time.")
    key_pattern: str | None = Field(
        None,
        description="Regex over the key with named groups `camera` and `time` (epoch s/ms or ISO), e.g. "
        "'(?P<camera>[^/]+)/(?P<time>\\d{13})\\.jpg'.",
    )
    camera_metadata: str | None = Field(None, description="Object metadata field holding the camera id.")
    backfill_id: str | None = Field(
        None, description="Name of the backfill for resuming; unset: from the source and filters."
    )
    s3_endpoint_url: str | None = Field(None, description="S3-compatible endpoint (MinIO, a local server); unset: AWS.")
    s3_region: str | None = Field(None, description="S3 region.")


class VideoSettings(ProducerSettings):
    """Cameras and video files: how often to sample, how to encode, how to ride out a dropped stream."""

    sample_fps: float = Field(10.0, gt=0, description="Frames per second to send per camera (ALPR agents: 5-15).")
    jpeg_quality: int = Field(90, ge=10, le=100, description="JPEG quality of the frames sent.")
    live: bool | None = Field(
        None, description="Treat the source as a live stream (re-open when it drops); unset: not for local files."
    )
    reconnect_max_s: float = Field(30.0, gt=0, description="Longest wait between attempts to re-open a stream.")
    max_reconnects: int = Field(-1, ge=-1, description="Give up on a stream after this many re-opens; -1: never.")
    buffer_frames: int = Field(64, ge=1, description="Frames held per camera while the broker is slow; the oldest go.")
    motion_threshold: float = Field(
        0.0, ge=0, description="Skip frames whose mean change from the last sent one is below this (0-255); 0: off."
    )
    cameras_file: Path | None = Field(
        None, description="TOML file of cameras ([[camera]] id, url, and optionally name, sample_fps)."
    )


# Which commands read each settings group (a class's own fields), for the README's table.
READERS_OF: tuple[tuple[type[Settings], str], ...] = (
    (Settings, "every command"),
    (EngineSettings, "recognize, worker, serve, bench accuracy / speed"),
    (ServiceSettings, "worker, aggregate, store, webhooks, alerts"),
    (WorkerSettings, "worker"),
    (AggregatorSettings, "aggregate"),
    (StoreLocation, "store, search, alerts, console, users"),
    (StoreSettings, "store"),
    (AlertSettings, "alerts"),
    (ConsoleSettings, "console"),
    (WebhookSettings, "webhooks"),
    (ApiSettings, "serve"),
    (ProducerSettings, "produce files / s3 / video"),
    (CheckpointedSettings, "produce files / s3"),
    (FilesSettings, "produce files"),
    (BackfillSettings, "produce s3"),
    (VideoSettings, "produce video"),
)


def own_fields(cls: type[Settings]) -> list[str]:
    """The fields `cls` declares itself, not those of the classes it builds on."""
    inherited = {name for base in cls.__mro__[1:] for name in getattr(base, "model_fields", {})}
    return [name for name in cls.model_fields if name not in inherited]


def settings_table() -> str:
    """The README's table of which command reads which PLATESTREAM_* variables."""
    rows = ["| settings | read by | variables (PLATESTREAM_...) |", "| --- | --- | --- |"]
    for cls, readers in READERS_OF:
        names = ", ".join(f"`{name.upper()}`" for name in own_fields(cls))
        rows.append(f"| {cls.__name__} | {readers} | {names} |")
    return "\n".join(rows)
