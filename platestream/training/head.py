"""Training the plate head (`platestream train head`): a small network from PP-OCR's reader
features to the 36 plate characters, trained on plates as the engine sees them in photographs.

Data: every labelled training crop and rendered plates, each mounted in street frames
(`scenes.py`), found by the engine's detector, cut, line-found and rectified by the engine's own
code, and run through PP-OCR's reader once: the features of each line are what the head learns
from (PP-OCR itself stays frozen, so two CPU cores train the head in minutes). Held out: scene views
of the crops of a tenth of the plate texts (`crops.Crop.held_out`), never trained on. How the
engine mixes the head with PP-OCR's own distribution (the rule and PP-OCR's share) is chosen on
them, each line read as the engine reads it, not on the benchmark's photos.

JAX and optax come with the `train` extra; nothing here is imported at run time.
"""

from __future__ import annotations

import dataclasses
import difflib
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from platestream.training import onnx_jax
from platestream.training.crops import Crop, load_crops, read_crop
from platestream.training.render import PLATE_MAKERS, REGIONS, Assets, Image, plate_text
from platestream.training.train import Progress, TrainingError, _jax
from platestream.workers.engine.plate_head import MIXINGS, mix_distributions

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
FEATURES = 120  # PP-OCRv6 small's features per time step
MAX_STEPS = 80  # a line up to 640 px wide at the reader's height of 48
MIXES = (0.0, 0.25, 0.4, 0.5, 0.6, 0.75)  # PP-OCR's share tried on the held-out views, with each MIXINGS rule
OPSET = 11  # PP-OCR's reader's own: the head joins its graph


@dataclass(frozen=True)
class HeadRecipe:
    """Everything that decides the head, apart from the data's own files. The defaults take
    about 25 minutes on two CPU cores (most of it cutting the scenes)."""

    views: int = 4  # street scenes of each real crop
    rendered: int = 5000  # rendered plates, one scene each
    steps: int = 3000
    batch: int = 256
    hidden: int = 256
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    dropout: float = 0.1
    neck: bool = False  # tune PP-OCR's neck too (a copy ships in the head), not only a new last layer
    neck_learning_rate: float = 3e-4
    warmup: int = 300  # steps of the new head alone before the neck moves
    seed: int = 0

    def data_key(self, crops_digest: str) -> str:
        # "neck": lines keep its input; "two-line": a two-line plate's lines are joined
        fields = (self.views, self.rendered, self.seed, crops_digest, "neck", "two-line")
        return hashlib.sha256(repr(fields).encode()).hexdigest()[:12]


@dataclass
class Lines:
    """Plate lines as PP-OCR's reader saw them: per line its features and PP-OCR's own
    probabilities (blank + ALPHABET) per time step, its text, region and side of the split."""

    features: list[NDArray[np.float16]] = field(default_factory=list)
    ppocr: list[NDArray[np.float16]] = field(default_factory=list)
    neck: list[NDArray[np.float16]] = field(default_factory=list)  # the neck's input: steps x channels
    texts: list[str] = field(default_factory=list)
    regions: list[str] = field(default_factory=list)
    held_out: list[bool] = field(default_factory=list)

    def add(self, other: Lines) -> None:
        for name in ("features", "ppocr", "neck", "texts", "regions", "held_out"):
            getattr(self, name).extend(getattr(other, name))

    def __len__(self) -> int:
        return len(self.texts)


# --- cutting plates out of scenes, in worker processes ----------------------------------------------


class _Cutter:
    """The engine's detector, text-line finder and PP-OCR's reader with its features exposed."""

    def __init__(self) -> None:
        import cv2
        import onnx

        from platestream.workers.engine import models
        from platestream.workers.engine.default import WEAK_DETECTION, PlateDetector, TextReader
        from platestream.workers.engine.plate_head import NECK_INPUT, features_tensor

        cv2.setNumThreads(1)
        cpu = ["CPUExecutionProvider"]
        self.detector = PlateDetector(models.plate_detector(), size=320, threads=1, providers=cpu,
                                      min_confidence=WEAK_DETECTION)  # fmt: skip
        self.lines = TextReader(threads=1, providers=cpu)
        model = onnx.load(str(models.ocr_model(models.OCR_READER)))
        for name in (features_tensor(model.graph), NECK_INPUT):
            model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
        self.reader = models.onnx_session(model.SerializeToString(), 1, cpu)

    def detect(self, frame: Image) -> list[tuple[tuple[float, float, float, float], float]]:
        return [((d.x1, d.y1, d.x2, d.y2), d.confidence) for d in self.detector.detect([frame])[0]]

    def line(self, plate: Image, text: str, rng: np.random.Generator) -> tuple[NDArray[np.float16], ...] | None:
        """One scene of `plate`, cut and read as the engine does; None when the detector misses it.
        Where the engine would also read a line as tall above or below the registration's (a
        two-line plate), both lines are read and joined, top line first, when together they read
        closer to `text` than the registration's line alone: a square plate's label is both lines'."""
        from platestream.training.scenes import scene_crop
        from platestream.workers.engine.default import padded_crop

        scene = scene_crop(plate, rng, self.detect)
        if scene is None:
            return None
        crop, _, _ = padded_crop(scene.frame, scene.box)
        if crop.shape[0] < 4 or crop.shape[1] < 8:
            return None
        corners, other = self.lines.registration_rows(crop)
        cut = self._read(crop, corners)
        if other is not None:
            second = self._read(crop, other)
            top, bottom = (second, cut) if float(other[:, 1].mean()) < float(corners[:, 1].mean()) else (cut, second)
            joined = tuple(np.concatenate([a, b]) for a, b in zip(top, bottom, strict=True))
            if _closeness(joined[1], text) > _closeness(cut[1], text):
                cut = joined
        return cut

    def _read(self, crop: Image, corners: NDArray[np.float32]) -> tuple[NDArray[np.float16], ...]:
        """A line's PP-OCR features, probabilities (blank + ALPHABET) and neck input per step."""
        from platestream.workers.engine.default import line_image

        probabilities, features, neck = self.reader.run(None, {"x": self.lines.tensor(line_image(crop, corners))})
        ppocr = self.lines.plate_characters(probabilities[0])
        return features[0].astype(np.float16), ppocr.astype(np.float16), neck[0, :, 0].T.astype(np.float16)


def _closeness(probabilities: NDArray[np.float16], text: str) -> float:
    """How alike PP-OCR's greedy reading of a line (blank + ALPHABET per step) and `text` are, 0-1."""
    from platestream.workers.engine.default import ctc_alternatives

    positions = ctc_alternatives(np.asarray(probabilities, np.float32), top=1)
    read = "".join(alternatives[0][0] for alternatives in positions)
    return difflib.SequenceMatcher(None, read, text, autojunk=False).ratio()


@functools.cache
def _cutter() -> _Cutter:
    """One per worker process: its sessions are made once, not per chunk."""
    return _Cutter()


def _cut_chunk(job: tuple[int, list[tuple[str, str, str, bool]], int, Assets | None]) -> Lines:
    """Scenes of one chunk of plates: (path, text, region, held out) real crops, `views` scenes
    each, or ("", "", region, False) for a plate rendered here."""
    seed, items, views, assets = job
    cutter = _cutter()
    rng = np.random.default_rng(seed)
    lines = Lines()
    for path, label, region, held in items:
        if path:
            text, plate, tries = label, read_crop(Path(path)), views
        else:
            assert assets is not None
            text, splits = plate_text(region, rng)
            plate, tries = PLATE_MAKERS[region](text, splits, assets, rng)[0], 1
        for _ in range(tries):
            cut = cutter.line(plate, text, rng)
            if cut is not None:
                lines.add(Lines([cut[0]], [cut[1]], [cut[2]], [text], [region], [held]))
    return lines


def cut_lines(crops: Sequence[Crop], assets: Assets, recipe: HeadRecipe, workers: int, progress: Progress) -> Lines:
    """Scene views of every crop (held-out ones too: the figures) and of `recipe.rendered` plates."""
    from tqdm import tqdm

    chunk = 40
    real = [(str(c.path), c.text, c.region, c.held_out) for c in crops]
    rendered = [("", "", REGIONS[i % len(REGIONS)], False) for i in range(recipe.rendered)]
    items = real + rendered
    jobs = [(recipe.seed * 1_000_003 + i, items[i : i + chunk], recipe.views, assets)
            for i in range(0, len(items), chunk)]  # fmt: skip
    lines = Lines()
    # spawned, not forked: a fork of a process that has started JAX's threads can hang
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        for part in tqdm(pool.map(_cut_chunk, jobs), total=len(jobs), desc="cutting plates from scenes", unit="chunk"):
            lines.add(part)
    progress(f"data: {len(lines)} plate lines of {len(real)} real crops ({recipe.views} scenes each) and "
             f"{recipe.rendered} rendered plates; the detector missed the rest")  # fmt: skip
    return lines


# --- training ------------------------------------------------------------------------------------------


def _labels(texts: Sequence[str]) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    labels = np.zeros((len(texts), 10), np.float32)
    label_padding = np.ones((len(texts), 10), np.float32)
    for i, text in enumerate(texts):
        for j, char in enumerate(text[:10]):
            labels[i, j] = ALPHABET.index(char) + 1
            label_padding[i, j] = 0
    return labels, label_padding


def _by_length(lines: Lines, rows: NDArray[np.int64]) -> dict[int, NDArray[np.int64]]:
    """`rows` grouped by their line's number of time steps: a batch is drawn from one group, so
    that no padding enters the neck's attention, which sees a whole line at once."""
    steps = np.array([min(MAX_STEPS, len(lines.features[i])) for i in rows])
    return {int(length): rows[steps == length] for length in np.unique(steps)}


def _inputs(lines: Lines, rows: NDArray[np.int64], neck: bool) -> NDArray[np.float32]:
    """The trained part's input for lines of one length: the neck's (batch, channels, 1, steps)
    or PP-OCR's features (batch, steps, 120)."""
    if neck:
        return np.stack([lines.neck[i][:MAX_STEPS].T[:, None, :] for i in rows]).astype(np.float32)
    return np.stack([lines.features[i][:MAX_STEPS] for i in rows]).astype(np.float32)


def exact_reads(
    probabilities: Sequence[NDArray[np.float32]], lines: Lines, rows: NDArray[np.int64]
) -> dict[str, float]:
    """Per region, the percent of `rows` whose plate the engine would report right from these
    `probabilities` (per line): its character alternatives, the region's templates and look-alike
    rules (`candidates.read_plate`), against the label as the engine writes it (a US O as 0)."""
    from platestream.workers.engine.candidates import UNUSED_CHARACTERS, read_plate
    from platestream.workers.engine.default import ctc_alternatives
    from platestream.workers.engine.templates import regions_for

    figures = {}
    regions = np.array(lines.regions)
    for region in REGIONS:
        chosen = rows[regions[rows] == region]
        templates, unused = regions_for(region), UNUSED_CHARACTERS.get(region, {})
        right = 0
        for i in chosen:
            choice = read_plate(ctc_alternatives(np.asarray(probabilities[i], np.float32)), region, templates, topn=1)
            right += choice is not None and choice.plate == "".join(unused.get(c, c) for c in lines.texts[i])
        figures[region] = round(100 * right / max(1, len(chosen)), 1)
    return figures


def train_head(
    crops_root: Path, out: Path, recipe: HeadRecipe = HeadRecipe(), *, assets: Assets | None = None,
    workers: int | None = None, version: str = "", progress: Progress = print,
) -> dict[str, Any]:  # fmt: skip
    """Cut the data (cached in `out`), train, export `out/plate-head.onnx`; return the figures also
    written to `out/metrics.json`."""
    jax, _, _ = _jax()

    started = time.time()
    crops = load_crops(crops_root)
    if not crops:
        raise TrainingError(f"no labelled crops under {crops_root} (expected us/labels.tsv, br/labels.tsv)")
    out.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256("\n".join(f"{c.path.name}\t{c.text}" for c in crops).encode()).hexdigest()
    cache = out / f"lines-{recipe.data_key(digest)}.pkl"
    if cache.exists():
        lines: Lines = pickle.loads(cache.read_bytes())
        progress(f"data: {len(lines)} plate lines from {cache}")
    else:
        lines = cut_lines(crops, assets or Assets.find(crops_root / "us-blank-plates"), recipe,
                          workers or max(1, os.cpu_count() or 1), progress)  # fmt: skip
        cache.write_bytes(pickle.dumps(lines))
    data_seconds = time.time() - started
    held = np.array(lines.held_out, dtype=bool)
    train_rows, held_rows = np.flatnonzero(~held), np.flatnonzero(held)
    if len(train_rows) == 0:
        raise TrainingError("the detector found none of the training plates in their scenes")
    neck = _neck() if recipe.neck else None
    params, forward, loss_curve, train_seconds = _fit(lines, train_rows, recipe, neck)
    run = jax.jit(lambda p, x: jax.nn.softmax(forward(p, x), -1))
    head: list[NDArray[np.float32]] = [np.zeros(0, np.float32)] * len(lines)
    for rows in _by_length(lines, np.arange(len(lines))).values():
        for start in range(0, len(rows), 256):
            chunk = rows[start : start + 256]
            for row, probabilities in zip(chunk, np.asarray(run(params, _inputs(lines, chunk, neck is not None))),
                                          strict=True):  # fmt: skip
                head[row] = probabilities
    ppocr = [p[:MAX_STEPS].astype(np.float32) for p in lines.ppocr]
    by_mix = {
        (mixing, mix): exact_reads([mix_distributions(h, q, mix, mixing) for h, q in zip(head, ppocr, strict=True)],
                                   lines, held_rows)
        for mixing in MIXINGS for mix in MIXES
    }  # fmt: skip
    ppocr_alone = exact_reads([mix_distributions(h, q, 1.0, "linear") for h, q in zip(head, ppocr, strict=True)],
                              lines, held_rows)  # fmt: skip
    mixing, mix = max(by_mix, key=lambda key: (sum(by_mix[key].values()), key[1], key[0]))
    progress(f"held-out exact reads: PP-OCR alone {ppocr_alone}; " +
             "; ".join(f"{r} share {m}: {f}" for (r, m), f in by_mix.items()) + f"; chosen {mixing} {mix}")  # fmt: skip

    head_params = {k: np.asarray(v) for k, v in (params["head"] if neck else params).items()}
    tuned = onnx_jax.with_weights(neck, params["neck"]) if neck else None
    model_bytes = to_onnx(head_params, mix=mix, mixing=mixing, version=version, neck=tuned)
    target = out / "plate-head.onnx"
    target.write_bytes(model_bytes)
    metrics: dict[str, Any] = {
        "sha256": hashlib.sha256(model_bytes).hexdigest(),
        "recipe": dataclasses.asdict(recipe),
        "mix": mix,
        "mixing": mixing,
        "held_out_exact_percent": by_mix[(mixing, mix)],
        "held_out_exact_percent_ppocr_alone": ppocr_alone,
        "held_out_exact_percent_by_mix": {f"{r} {m}": f for (r, m), f in by_mix.items()},
        "held_out_lines": len(held_rows),
        "training_lines": len(train_rows),
        "loss_curve": loss_curve,
        "data_seconds": round(data_seconds, 1),
        "train_seconds": round(train_seconds, 1),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, JAX on {jax.default_backend()}",
        "version": version,
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    progress(f"wrote {target} ({len(model_bytes) / 1e6:.2f} MB, sha256 {metrics['sha256']})")
    return metrics


def _neck() -> onnx_jax.Subgraph:
    """PP-OCR's neck, from NECK_INPUT to the features its last layer reads, as trainable JAX."""
    import onnx

    from platestream.workers.engine import models
    from platestream.workers.engine.plate_head import NECK_INPUT, features_tensor

    model = onnx.load(str(models.ocr_model(models.OCR_READER)))
    return onnx_jax.extract(model, NECK_INPUT, features_tensor(model.graph))


def _fit(
    lines: Lines, train_rows: NDArray[np.int64], recipe: HeadRecipe, neck: onnx_jax.Subgraph | None
) -> tuple[Any, Callable[..., Any], list[tuple[int, float]], float]:
    """The seeded training loop (CTC, AdamW with cosine decay, dropout, PP-OCR's neck tuned with a
    smaller rate once the new head has had `warmup` steps): the weights, the forward function, the
    loss every 10 steps and the loop's seconds."""
    jax, jnp, optax = _jax()
    from tqdm import tqdm

    key = jax.random.PRNGKey(recipe.seed)
    k1, k2 = jax.random.split(key)
    head = {
        "w1": jax.random.normal(k1, (3 * FEATURES, recipe.hidden)) / np.sqrt(3 * FEATURES),
        "b1": jnp.zeros(recipe.hidden),
        "w2": jax.random.normal(k2, (recipe.hidden, len(ALPHABET) + 1)) / np.sqrt(recipe.hidden),
        "b2": jnp.zeros(len(ALPHABET) + 1),
    }
    params: Any = head
    optimizer = optax.adamw(optax.cosine_decay_schedule(recipe.learning_rate, recipe.steps),
                            weight_decay=recipe.weight_decay)  # fmt: skip
    if neck is not None:
        params = {"head": head, "neck": {k: jnp.asarray(v) for k, v in neck.params.items()}}
        later = optax.cosine_decay_schedule(recipe.neck_learning_rate, max(1, recipe.steps - recipe.warmup))
        neck_rate = optax.join_schedules([optax.constant_schedule(0.0), later], [recipe.warmup])
        optimizer = optax.multi_transform(
            {"head": optimizer, "neck": optax.adamw(neck_rate, weight_decay=recipe.weight_decay)},
            {"head": "head", "neck": "neck"},
        )
    opt_state = optimizer.init(params)

    def head_forward(p: Any, x: Any, dropout_key: Any = None) -> Any:
        # each step with its neighbours: the ONNX export's convolution of width 3
        previous = jnp.pad(x, ((0, 0), (1, 0), (0, 0)))[:, :-1]
        following = jnp.pad(x, ((0, 0), (0, 1), (0, 0)))[:, 1:]
        h = jnp.concatenate([previous, x, following], -1)
        if dropout_key is not None:
            keep = 1.0 - recipe.dropout
            h = h * jax.random.bernoulli(dropout_key, keep, h.shape) / keep
        h = jax.nn.relu(h @ p["w1"] + p["b1"])
        return h @ p["w2"] + p["b2"]

    def forward(p: Any, x: Any, dropout_key: Any = None) -> Any:
        if neck is None:
            return head_forward(p, x, dropout_key)
        return head_forward(p["head"], neck.apply(p["neck"], x), dropout_key)

    def step(p: Any, state: Any, batch: tuple[Any, ...], dropout_key: Any) -> tuple[Any, Any, Any]:
        x, y, y_pad = batch

        def loss_fn(q: Any) -> Any:
            logits = forward(q, x, dropout_key)
            x_pad = jnp.zeros(logits.shape[:2])
            return optax.ctc_loss(logits, x_pad, y.astype(jnp.int32), y_pad).mean()

        loss, grads = jax.value_and_grad(loss_fn)(p)
        updates, state = optimizer.update(grads, state, p)
        return optax.apply_updates(p, updates), state, loss

    compiled = jax.jit(step)

    rng = np.random.default_rng(recipe.seed)
    # lengths rarer than 1 % of the lines are left out of training: each length costs a compilation
    every = list(_by_length(lines, train_rows).values())
    groups = [rows for rows in every if len(rows) >= 0.01 * len(train_rows)] or every
    weights = np.array([len(rows) for rows in groups], np.float64)
    loop_started = time.time()
    loss_curve: list[tuple[int, float]] = []
    bar = tqdm(total=recipe.steps, desc="training plate head", unit="step")
    for done in range(1, recipe.steps + 1):
        rows = rng.choice(groups[rng.choice(len(groups), p=weights / weights.sum())], recipe.batch)
        labels, label_padding = _labels([lines.texts[i] for i in rows])
        batch = (_inputs(lines, rows, neck is not None), labels, label_padding)
        params, opt_state, loss = compiled(params, opt_state, batch, jax.random.fold_in(key, done))
        if done % 10 == 0 or done == recipe.steps:
            loss_curve.append((done, round(float(loss), 4)))
            bar.set_postfix(loss=f"{loss_curve[-1][1]:.3f}")
        bar.update(1)
    bar.close()

    return params, forward, loss_curve, time.time() - loop_started


def to_onnx(params: dict[str, NDArray[Any]], *, mix: float, mixing: str = "geometric", version: str = "",
            neck: Any = None) -> bytes:  # fmt: skip
    """The head as an ONNX graph (opset 11, PP-OCR's reader's own) from `features` (batch, steps,
    120) to `plate_probabilities` (batch, steps, blank + 36): the neighbour-concatenating layer is a
    convolution of width 3 over the steps. With `neck` (the tuned copy of PP-OCR's neck, an ONNX
    model from NECK_INPUT to the features), the head reads the neck's input instead, through that
    copy, and says so in its metadata (`reads`)."""
    from onnx import TensorProto, helper, numpy_helper

    from platestream.workers.engine.plate_head import HEAD_INPUT, HEAD_OUTPUT, NECK_INPUT, copy_graph

    hidden = params["w1"].shape[1]
    # w1's rows: the previous step's features, this step's, the next step's -> conv taps 0, 1, 2
    w1 = params["w1"].reshape(3, FEATURES, hidden).transpose(2, 1, 0)
    w2 = params["w2"].T[:, :, None]
    initializers = [
        numpy_helper.from_array(np.ascontiguousarray(w1, np.float32), "w1"),
        numpy_helper.from_array(np.asarray(params["b1"], np.float32), "b1"),
        numpy_helper.from_array(np.ascontiguousarray(w2, np.float32), "w2"),
        numpy_helper.from_array(np.asarray(params["b2"], np.float32), "b2"),
    ]
    features = HEAD_INPUT if neck is None else "neck/" + neck.graph.output[0].name
    input_shape: list[Any] = ["batch", "steps", FEATURES]
    metadata = {"alphabet": ALPHABET, "mix": str(mix), "mixing": mixing, "features": str(FEATURES),
                "version": version}  # fmt: skip
    if neck is not None:
        channels = neck.graph.input[0].type.tensor_type.shape.dim[1].dim_value
        input_shape = ["batch", channels or "channels", 1, "steps"]
        metadata["reads"] = NECK_INPUT
    nodes = [
        helper.make_node("Transpose", [features], ["channels"], name="to_channels", perm=[0, 2, 1]),
        helper.make_node(
            "Conv", ["channels", "w1", "b1"], ["hidden"], name="neighbours", kernel_shape=[3], pads=[1, 1]
        ),
        helper.make_node("Relu", ["hidden"], ["active"], name="relu"),
        helper.make_node("Conv", ["active", "w2", "b2"], ["logits"], name="characters", kernel_shape=[1]),
        helper.make_node("Transpose", ["logits"], ["steps"], name="to_steps", perm=[0, 2, 1]),
        helper.make_node("Softmax", ["steps"], [HEAD_OUTPUT], name="softmax", axis=2),
    ]
    graph = helper.make_graph(
        [], "plate_head",
        [helper.make_tensor_value_info(HEAD_INPUT, TensorProto.FLOAT, input_shape)],
        [helper.make_tensor_value_info(HEAD_OUTPUT, TensorProto.FLOAT, ["batch", "steps", len(ALPHABET) + 1])],
        initializers,
    )  # fmt: skip
    if neck is not None:  # the tuned neck's nodes first (graphs list nodes in order of use)
        copy_graph(neck.graph, graph, "neck/", {neck.graph.input[0].name: HEAD_INPUT})
    graph.node.extend(nodes)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="platestream")
    model.ir_version = 7
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    return bytes(model.SerializeToString())
