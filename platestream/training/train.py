"""Training the plate reader: data (rendered plates and real crops seen as the detector would box
them), a seeded loop (AdamW, cosine decay, EMA weights, label smoothing) with checkpoints and
resume, held-out figures per region, and the ONNX export the engine loads.

JAX and optax come with the `train` extra; nothing here is imported at run time.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import multiprocessing
import os
import pickle
import platform
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from platestream.errors import MissingExtraError, PlatestreamError
from platestream.training.crops import Crop, detector_view, load_crops, read_crop
from platestream.training.render import REGIONS, Assets, Image, render_sample
from platestream.workers.engine.reader import prepare, rectangle_crop

Progress = Callable[[str], None]


class TrainingError(PlatestreamError):
    """Training could not start or go on."""


@dataclass(frozen=True)
class Recipe:
    """Everything that decides the model, apart from the data's own files. The defaults are sized
    for about an hour on two CPU cores; the shipped model's recipe (more steps, plates and views,
    on a GPU) is in its model card."""

    steps: int = 3000
    batch: int = 128
    synthetic: int = 60_000
    real_views: int = 12  # augmented views of each training crop
    scene_views: int = 0  # more views of each: mounted in a street scene, cut from the detector's box
    real_share: float = 0.4  # of each batch
    learning_rate: float = 2e-3
    warmup: int = 200
    weight_decay: float = 0.02
    label_smoothing: float = 0.05
    ema: float = 0.998
    box_weight: float = 2.0
    seed: int = 0
    region_mix: tuple[tuple[str, float], ...] = (("us", 0.45), ("eu", 0.35), ("br", 0.2))

    def data_key(self, crops_digest: str) -> str:
        fields: tuple[object, ...] = (self.synthetic, self.real_views, self.seed, self.region_mix, crops_digest)
        if self.scene_views:  # keeps the keys of earlier recipes' caches
            fields = (*fields, self.scene_views)
        return hashlib.sha256(repr(fields).encode()).hexdigest()[:12]


@dataclass
class Dataset:
    images: NDArray[np.uint8]  # (n, height, width, 3) RGB
    labels: NDArray[np.int32]  # (n, slots)
    boxes: NDArray[np.float32]  # (n, 4); zeros where unknown
    has_box: NDArray[np.float32]  # (n,)
    regions: NDArray[np.int8]  # index into REGIONS

    def __len__(self) -> int:
        return len(self.labels)

    def save(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        for field in dataclasses.fields(self):
            np.save(path / f"{field.name}.npy", getattr(self, field.name))

    @classmethod
    def load(cls, path: Path) -> Dataset:
        return cls(**{f.name: np.load(path / f"{f.name}.npy") for f in dataclasses.fields(cls)})

    @classmethod
    def join(cls, parts: Sequence[Dataset]) -> Dataset:
        return cls(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in dataclasses.fields(cls)))


def _jax() -> tuple[Any, Any, Any]:
    try:
        import jax
        import jax.numpy as jnp
        import optax
    except ImportError:
        raise MissingExtraError("jax", "train") from None
    return jax, jnp, optax


def _render_chunk(job: tuple[int, int, str, Assets, int, int, int]) -> Dataset:
    seed, count, region, assets, height, width, slots = job
    from platestream.training.model import encode_labels

    cv2.setNumThreads(1)  # one process per core already
    rng = np.random.default_rng(seed)
    samples = [render_sample(region, assets, rng) for _ in range(count)]
    return Dataset(
        np.stack([prepare(s.image, height, width) for s in samples]),
        encode_labels([s.text for s in samples], slots),
        np.array([s.box for s in samples], np.float32),
        np.ones(count, np.float32),
        np.full(count, REGIONS.index(region), np.int8),
    )


@functools.cache
def _detect() -> Callable[[Image], list[tuple[tuple[float, float, float, float], float]]]:
    """The engine's plate detector in this worker process, as `scenes.scene_crop` calls it."""
    from platestream.workers.engine import models
    from platestream.workers.engine.default import WEAK_DETECTION, PlateDetector

    detector = PlateDetector(models.plate_detector(), size=320, threads=1, providers=["CPUExecutionProvider"],
                             min_confidence=WEAK_DETECTION)  # fmt: skip
    return lambda frame: [((d.x1, d.y1, d.x2, d.y2), d.confidence) for d in detector.detect([frame])[0]]


def _real_chunk(job: tuple[int, list[Crop], int, int, int, int, int]) -> Dataset:
    seed, crops, views, scene_views, height, width, slots = job
    from platestream.training.model import encode_labels
    from platestream.training.scenes import scene_crop

    cv2.setNumThreads(1)
    rng = np.random.default_rng(seed)
    images, texts, regions = [], [], []
    for crop in crops:
        pixels = read_crop(crop.path)
        cuts = [detector_view(pixels, rng) for _ in range(views)]
        for _ in range(scene_views):  # the detector misses about one in five: those are left out
            scene = scene_crop(pixels, rng, _detect())
            if scene is not None:
                cut, _ = rectangle_crop(scene.frame, scene.box)
                if cut.shape[0] >= 4 and cut.shape[1] >= 8:
                    cuts.append(cut)
        for cut in cuts:
            images.append(prepare(cut, height, width))
            texts.append(crop.text)
            regions.append(REGIONS.index(crop.region))
    count = len(texts)
    return Dataset(np.stack(images), encode_labels(texts, slots), np.zeros((count, 4), np.float32),
                   np.zeros(count, np.float32), np.array(regions, np.int8))  # fmt: skip


def held_out_set(crops: Sequence[Crop], height: int, width: int, slots: int) -> Dataset:
    """The held-out crops as the engine would cut them from a detector's box around the plate."""
    from platestream.training.model import encode_labels

    images = []
    for crop in crops:
        pixels = read_crop(crop.path)
        h, w = pixels.shape[:2]
        images.append(prepare(rectangle_crop(pixels, (0, 0, w, h))[0], height, width))
    count = len(crops)
    regions = np.array([REGIONS.index(c.region) for c in crops], np.int8)
    return Dataset(np.stack(images), encode_labels([c.text for c in crops], slots), np.zeros((count, 4), np.float32),
                   np.zeros(count, np.float32), regions)  # fmt: skip


def build_data(
    recipe: Recipe, assets: Assets, crops: Sequence[Crop], *, height: int, width: int, slots: int, workers: int,
    progress: Progress,
) -> tuple[Dataset, Dataset]:  # fmt: skip
    """(rendered plates, views of the training crops), made by `workers` processes."""
    chunk = 500
    jobs: list[tuple[int, int, str, Assets, int, int, int]] = []
    for region, share in recipe.region_mix:
        total = int(recipe.synthetic * share)
        for start in range(0, total, chunk):
            seed = recipe.seed * 1_000_003 + REGIONS.index(region) * 10_007 + start
            jobs.append((seed, min(chunk, total - start), region, assets, height, width, slots))
    train_crops = [c for c in crops if not c.held_out]
    real_jobs = [(recipe.seed * 7919 + i, train_crops[i : i + 50], recipe.real_views, recipe.scene_views, height,
                  width, slots) for i in range(0, len(train_crops), 50)]  # fmt: skip
    from tqdm import tqdm

    # spawned, not forked: the parent may already run JAX's threads, which a fork would copy mid-flight
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        rendered = list(tqdm(pool.map(_render_chunk, jobs), total=len(jobs), desc="rendering plates", unit="chunk",
                             leave=False))  # fmt: skip
        real = list(tqdm(pool.map(_real_chunk, real_jobs), total=len(real_jobs), desc="real crops", unit="chunk",
                         leave=False))  # fmt: skip
    synthetic, views = Dataset.join(rendered), Dataset.join(real)
    scenes = f" ({recipe.scene_views} in street scenes each)" if recipe.scene_views else ""
    progress(f"data: {len(synthetic)} rendered plates, {len(views)} views of {len(train_crops)} real crops{scenes}")
    return synthetic, views


@dataclass
class State:
    step: int
    params: Any
    stats: Any
    ema_params: Any
    ema_stats: Any
    opt_state: Any


def train_reader(
    crops_root: Path, out: Path, recipe: Recipe = Recipe(), *, assets: Assets | None = None, resume: bool = False,
    workers: int | None = None, eval_every: int = 500, checkpoint_every: int = 500, version: str = "",
    cache_dir: Path | None = None, progress: Progress = print,
) -> dict[str, Any]:  # fmt: skip
    """Train, export `out/plate-reader.onnx` and return the figures written to `out/metrics.json`."""
    jax, jnp, _ = _jax()
    from tqdm import tqdm

    from platestream.training.model import Architecture, init

    started = time.time()
    arch = Architecture()
    crops = load_crops(crops_root)
    if not crops:
        raise TrainingError(f"no labelled crops under {crops_root} (expected us/labels.tsv, br/labels.tsv)")
    out.mkdir(parents=True, exist_ok=True)
    held_out = held_out_set([c for c in crops if c.held_out], arch.height, arch.width, arch.slots)
    progress(f"held out: {len(held_out)} real crops of plates never trained on")

    optimizer = _optimizer(recipe)
    checkpoint = out / "checkpoint.pkl"
    state = _restore(checkpoint, recipe, progress) if resume and checkpoint.exists() else None
    if state is None:
        params, stats = init(jax.random.PRNGKey(recipe.seed), arch)
        state = State(0, params, stats, params, stats, optimizer.init(params))
    if state.step < recipe.steps:
        cache = (cache_dir or out) / f"data-{recipe.data_key(_crops_digest(crops))}"
        synthetic, views = _training_data(recipe, assets or Assets.find(crops_root / "us-blank-plates"), crops, cache,
                                          workers or max(1, os.cpu_count() or 1), progress)  # fmt: skip
    else:  # a finished run's checkpoint: export only
        synthetic = views = _empty(arch)
    data_seconds = time.time() - started
    device_data = {name: jnp.asarray(np.concatenate([getattr(synthetic, name), getattr(views, name)]))
                   for name in ("images", "labels", "boxes", "has_box")}  # fmt: skip
    n_synthetic, n_real = len(synthetic), len(views)
    train_step, evaluate = _compiled(arch, recipe, optimizer)

    rng = np.random.default_rng(recipe.seed + state.step)
    real_per_batch = round(recipe.batch * recipe.real_share) if n_real else 0
    state_tuple = (state.params, state.stats, state.ema_params, state.ema_stats, state.opt_state,
                   jnp.asarray(state.step, jnp.float32))  # fmt: skip
    key = jax.random.PRNGKey(recipe.seed + 1)
    loop_started = time.time()
    bar = tqdm(total=recipe.steps, initial=state.step, desc="training reader", unit="step")
    loss_curve: list[tuple[int, float]] = []
    for step in range(state.step, recipe.steps):
        indices = _batch(rng, n_synthetic, n_real, recipe.batch, real_per_batch)
        state_tuple, (loss, exact) = train_step(state_tuple, device_data, indices, jax.random.fold_in(key, step))
        done = step + 1
        if done % 10 == 0 or done == recipe.steps:
            loss_curve.append((done, round(float(loss), 4)))
            bar.set_postfix(loss=f"{loss_curve[-1][1]:.3f}", acc=f"{100 * float(exact):.1f}%")
        bar.update(1)
        if done % eval_every == 0 and done != recipe.steps:
            bar.write(f"step {done}: held-out exact reads {evaluate(state_tuple[2], state_tuple[3], held_out)}")
        if done % checkpoint_every == 0 or done == recipe.steps:
            _checkpoint(out, recipe, done, jax.device_get(state_tuple), arch, version)
    bar.close()
    timings = {"data_seconds": round(data_seconds, 1), "train_seconds": round(time.time() - loop_started, 1)}
    counts = {"held_out_crops": len(held_out), "training_crops": len([c for c in crops if not c.held_out]),
              "rendered_plates": n_synthetic, "real_views": n_real}  # fmt: skip
    return _finish(jax.device_get(state_tuple), evaluate, held_out, arch, recipe, out, version,
                   {"loss_curve": loss_curve, **counts, **timings}, progress)  # fmt: skip


def _finish(
    state_tuple: Any, evaluate: Callable[..., dict[str, float]], held_out: Dataset, arch: Any, recipe: Recipe,
    out: Path, version: str, facts: dict[str, Any], progress: Progress,
) -> dict[str, Any]:  # fmt: skip
    """Held-out figures of the EMA weights, the exported model and metrics.json."""
    import jax

    from platestream.training.export import to_onnx

    ema_params, ema_stats = state_tuple[2], state_tuple[3]
    figures = evaluate(ema_params, ema_stats, held_out)
    progress(f"held-out exact reads per region (EMA weights): {figures}")
    model_bytes = to_onnx(ema_params, ema_stats, arch, version=version or "dev",
                          extra={"recipe": json.dumps(dataclasses.asdict(recipe))})  # fmt: skip
    target = out / "plate-reader.onnx"
    target.write_bytes(model_bytes)
    metrics: dict[str, Any] = {
        "held_out_exact_percent": figures,
        **facts,
        "recipe": dataclasses.asdict(recipe),
        "device": str(jax.devices()[0].device_kind),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "sha256": hashlib.sha256(model_bytes).hexdigest(),
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    progress(f"wrote {target} ({len(model_bytes) / 1e6:.1f} MB, sha256 {metrics['sha256'][:16]}...)")
    return metrics


def _optimizer(recipe: Recipe) -> Any:
    """AdamW with warm-up and cosine decay to 1 % of the peak rate, gradients clipped."""
    _, _, optax = _jax()
    warmup = min(recipe.warmup, recipe.steps // 4)
    schedule = optax.warmup_cosine_decay_schedule(0.0, recipe.learning_rate, warmup, max(warmup + 1, recipe.steps),
                                                  recipe.learning_rate * 0.01)  # fmt: skip
    return optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(schedule, weight_decay=recipe.weight_decay))


def _crops_digest(crops: Sequence[Crop]) -> str:
    return hashlib.sha256("\n".join(f"{c.path.name}\t{c.text}" for c in crops).encode()).hexdigest()


def _empty(arch: Any) -> Dataset:
    return Dataset(np.zeros((1, arch.height, arch.width, 3), np.uint8), np.zeros((1, arch.slots), np.int32),
                   np.zeros((1, 4), np.float32), np.zeros(1, np.float32), np.zeros(1, np.int8))  # fmt: skip


def _training_data(
    recipe: Recipe, assets: Assets, crops: Sequence[Crop], cache: Path, workers: int, progress: Progress
) -> tuple[Dataset, Dataset]:
    """The rendered plates and real views of a recipe, from `cache` when an earlier run made them."""
    from platestream.training.model import Architecture

    arch = Architecture()
    if (cache / "synthetic" / "labels.npy").exists() and (cache / "real" / "labels.npy").exists():
        synthetic, views = Dataset.load(cache / "synthetic"), Dataset.load(cache / "real")
        progress(f"data: {len(synthetic)} rendered plates and {len(views)} real views from {cache}")
        return synthetic, views
    synthetic, views = build_data(recipe, assets, crops, height=arch.height, width=arch.width, slots=arch.slots,
                                  workers=workers, progress=progress)  # fmt: skip
    synthetic.save(cache / "synthetic")
    views.save(cache / "real")
    return synthetic, views


def _restore(checkpoint: Path, recipe: Recipe, progress: Progress) -> State:
    jax, jnp, _ = _jax()
    with checkpoint.open("rb") as handle:
        saved = pickle.load(handle)  # our own file, written by _save_checkpoint
    if saved["recipe"] != dataclasses.asdict(recipe):
        raise TrainingError(f"{checkpoint} was made with another recipe; train into a new folder or drop --resume")
    progress(f"resuming at step {saved['step']} of {recipe.steps}")
    return State(saved["step"], *(jax.tree.map(jnp.asarray, saved[k]) for k in
                                  ("params", "stats", "ema_params", "ema_stats", "opt_state")))  # fmt: skip


def _compiled(arch: Any, recipe: Recipe, optimizer: Any) -> tuple[Callable[..., Any], Callable[..., dict[str, float]]]:
    """The jitted training step (with EMA) and a held-out evaluation."""
    jax, jnp, optax = _jax()
    from platestream.training.model import apply, decode

    classes = arch.classes

    def loss_fn(params: Any, stats: Any, batch: dict[str, Any], key: Any) -> tuple[Any, Any]:
        images = (batch["images"].astype(jnp.float32) / 255.0 - 0.5) / 0.5
        logits, box, new_stats = apply(params, stats, images, arch, train=True, dropout_key=key)
        target = jax.nn.one_hot(batch["labels"], classes)
        target = target * (1 - recipe.label_smoothing) + recipe.label_smoothing / classes
        ce = -(target * jax.nn.log_softmax(logits)).sum(-1).mean()
        has_box = batch["has_box"]
        box_error = (jnp.abs(box - batch["boxes"]).sum(-1) * has_box).sum() / jnp.maximum(1.0, has_box.sum())
        exact = (logits.argmax(-1) == batch["labels"]).all(-1).mean()
        return ce + recipe.box_weight * box_error, (new_stats, exact)

    def train_step(state_tuple: Any, data: dict[str, Any], indices: Any, key: Any) -> Any:
        params, stats, ema_params, ema_stats, opt_state, step = state_tuple
        batch = {name: array[indices] for name, array in data.items()}
        (loss, (new_stats, exact)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, stats, batch, key)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        decay = jnp.minimum(recipe.ema, (1.0 + step) / (10.0 + step))
        ema_params = jax.tree.map(lambda e, p: decay * e + (1 - decay) * p, ema_params, params)
        ema_stats = jax.tree.map(lambda e, p: decay * e + (1 - decay) * p, ema_stats, new_stats)
        return (params, new_stats, ema_params, ema_stats, opt_state, step + 1), (loss, exact)

    def predict(params: Any, stats: Any, images: Any) -> Any:
        logits, _, _ = apply(params, stats, (images.astype(jnp.float32) / 255.0 - 0.5) / 0.5, arch, train=False)
        return logits.argmax(-1)

    compiled_step, compiled_predict = jax.jit(train_step), jax.jit(predict)

    def evaluate(params: Any, stats: Any, data: Dataset) -> dict[str, float]:
        found = []
        for start in range(0, len(data), 256):
            batch = jnp.asarray(data.images[start : start + 256])
            found.extend(decode(np.asarray(compiled_predict(params, stats, batch))))
        truth = decode(data.labels)
        figures = {}
        for index, region in enumerate(REGIONS):
            rows = [i for i in range(len(truth)) if data.regions[i] == index]
            if rows:
                figures[region] = round(100.0 * sum(found[i] == truth[i] for i in rows) / len(rows), 2)
        return figures

    return compiled_step, evaluate


def _batch(rng: np.random.Generator, n_synthetic: int, n_real: int, size: int, real: int) -> NDArray[np.int64]:
    """Indices of one batch: `real` of the real views (stored after the rendered plates), the rest
    rendered plates."""
    rendered = rng.integers(0, n_synthetic, size - real)
    return np.concatenate([rendered, n_synthetic + rng.integers(0, max(1, n_real), real)])


def _checkpoint(out: Path, recipe: Recipe, step: int, host_state: Any, arch: Any, version: str) -> None:
    """The state to resume from, and (before the last step) a provisional model to use if the run is cut short."""
    from platestream.training.export import to_onnx

    _save_checkpoint(out / "checkpoint.pkl", recipe, step, host_state)
    if step != recipe.steps:
        model = to_onnx(host_state[2], host_state[3], arch, version=f"{version or 'dev'}+step{step}")
        (out / "plate-reader.onnx").write_bytes(model)


def _save_checkpoint(path: Path, recipe: Recipe, step: int, state_tuple: Any) -> None:
    params, stats, ema_params, ema_stats, opt_state, _ = state_tuple
    partial = path.with_suffix(".partial")
    with partial.open("wb") as handle:
        pickle.dump({"recipe": dataclasses.asdict(recipe), "step": step, "params": params, "stats": stats,
                     "ema_params": ema_params, "ema_stats": ema_stats, "opt_state": opt_state}, handle)  # fmt: skip
    partial.replace(path)
