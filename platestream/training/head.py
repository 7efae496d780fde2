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
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

from platestream.training import onnx_jax
from platestream.training.crops import Crop, load_crops, read_crop
from platestream.training.render import PLATE_MAKERS, REGIONS, Assets, Image, free_text, plate_text
from platestream.training.train import Progress, TrainingError, _jax
from platestream.workers.engine.plate_head import MIXINGS, NECK_INPUT, mix_distributions

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
FEATURES = 120  # PP-OCRv6 small's features per time step
MAX_STEPS = 80  # a line up to 640 px wide at the reader's height of 48
# Tuning the whole reader, each line is resized to a multiple of this many time steps (32 px): a
# shape is compiled once per width, and lines of 20-80 steps then need 16 shapes, not 61.
WHOLE_BUCKET = 4
MIXES = (0.0, 0.25, 0.4, 0.5, 0.6, 0.75)  # PP-OCR's share tried on the held-out views, with each MIXINGS rule
# How far below the best share's held-out reads (percent points, summed over the regions) share 0
# may read and still be chosen: about one held-out line of a region, less than a run's noise.
SHARE_ZERO_MARGIN = 0.5
# The tensor a head tuning each part of PP-OCR's reader reads (its `reads` metadata; none for a
# head on PP-OCR's own features), what it tunes in words, and the option of `train head` for it.
_READS = {"head": "", "neck": NECK_INPUT, "whole": "x"}
_TUNES = {"head": "no part of PP-OCR's reader", "neck": "PP-OCR's neck", "whole": "PP-OCR's whole reader"}
_OPTION = {"head": "neither --neck nor --whole", "neck": "--neck", "whole": "--whole"}
OPSET = 11  # PP-OCR's reader's own: the head joins its graph
# How far a training line's sides move in (first) or out (second), as a share of its width or
# height, when the whole reader is tuned (`jittered_line`).
LINE_JITTER = (0.04, 0.10)


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
    whole: bool = False  # tune PP-OCR's whole reader, backbone and neck (a copy ships in the head): a GPU job
    neck_learning_rate: float = 3e-4  # the tuned part's (neck or whole reader)
    warmup: int = 300  # steps of the new head alone before the neck (or whole reader) moves
    seed: int = 0
    init_head: str = ""  # a trained head's file to start from (`head_weights`), not random weights
    free_texts: float = 0.0  # the share of rendered plates with a text of no region's form (`free_text`)

    @property
    def part(self) -> str:
        """What is trained: "head" (a last layer alone), "neck" or "whole" (that part of PP-OCR's
        reader with it)."""
        return "whole" if self.whole else "neck" if self.neck else "head"

    def data_key(self, crops_digest: str) -> str:
        # "neck": lines keep its input; "two-line": a two-line plate's lines are joined; "images":
        # lines keep the reader's input image (the whole reader is tuned)
        fields = (
            (self.views, self.rendered, self.seed, crops_digest, "neck", "two-line")
            + (("images",) if self.whole else ())
            + ((self.free_texts,) if self.free_texts else ())
        )
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
    # the line as the reader's input, 48 x width x 3 (`TextReader.resized`): kept for tuning the whole reader
    images: list[NDArray[np.uint8]] = field(default_factory=list)

    def add(self, other: Lines) -> None:
        for name in ("features", "ppocr", "neck", "texts", "regions", "held_out", "images"):
            getattr(self, name).extend(getattr(other, name))

    def __len__(self) -> int:
        return len(self.texts)


# --- cutting plates out of scenes, in worker processes ----------------------------------------------


class Cut(NamedTuple):
    """One line as PP-OCR's reader read it: its features, its probabilities (blank + ALPHABET) and
    its neck's input per time step, and the line as the reader's input image (48 x width x 3)."""

    features: NDArray[np.float16]
    ppocr: NDArray[np.float16]
    neck: NDArray[np.float16]
    image: NDArray[np.uint8]


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

    def line(self, plate: Image, text: str, rng: np.random.Generator) -> Cut | None:
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
            joined = Cut(np.concatenate([top.features, bottom.features]), np.concatenate([top.ppocr, bottom.ppocr]),
                         np.concatenate([top.neck, bottom.neck]), _side_by_side(top.image, bottom.image))  # fmt: skip
            if _closeness(joined.ppocr, text) > _closeness(cut.ppocr, text):
                cut = joined
        return cut

    def _read(self, crop: Image, corners: NDArray[np.float32]) -> Cut:
        """The line at `corners` in `crop`, read by PP-OCR's reader."""
        from platestream.workers.engine.default import line_image, reader_tensor

        image = self.lines.resized(line_image(crop, corners))
        probabilities, features, neck = self.reader.run(None, {"x": reader_tensor(image)})
        ppocr = self.lines.plate_characters(probabilities[0])
        return Cut(features[0].astype(np.float16), ppocr.astype(np.float16), neck[0, :, 0].T.astype(np.float16),
                   np.asarray(image, np.uint8))  # fmt: skip


def _side_by_side(left: Image, right: Image) -> Image:
    """Two reader lines (48 px tall) as one, no wider than the reader reads (640 px)."""
    import cv2

    joined = np.concatenate([left, right], axis=1)
    if joined.shape[1] > 8 * MAX_STEPS:
        joined = cv2.resize(joined, (8 * MAX_STEPS, joined.shape[0]), interpolation=cv2.INTER_AREA)
    return np.asarray(joined, np.uint8)


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


def _cut_chunk(job: tuple[int, list[tuple[str, str, str, bool]], int, Assets | None, bool, float]) -> Lines:
    """Scenes of one chunk of plates: (path, text, region, held out) real crops, `views` scenes
    each, or ("", "", region, False) for a plate rendered here (its text of no form with the chance
    `free_texts`); with `images`, each line's image."""
    seed, items, views, assets, images, free_texts = job
    cutter = _cutter()
    rng = np.random.default_rng(seed)
    lines = Lines()
    for path, label, region, held in items:
        if path:
            text, plate, tries = label, read_crop(Path(path)), views
        else:
            assert assets is not None
            text, splits = free_text(rng) if free_texts and rng.random() < free_texts else plate_text(region, rng)
            plate, tries = PLATE_MAKERS[region](text, splits, assets, rng)[0], 1
        for _ in range(tries):
            cut = cutter.line(plate, text, rng)
            if cut is not None:
                lines.add(Lines([cut.features], [cut.ppocr], [cut.neck], [text], [region], [held],
                                [cut.image] if images else []))  # fmt: skip
    return lines


def cut_lines(crops: Sequence[Crop], assets: Assets, recipe: HeadRecipe, workers: int, progress: Progress) -> Lines:
    """Scene views of every crop (held-out ones too: the figures) and of `recipe.rendered` plates."""
    from tqdm import tqdm

    chunk = 40
    real = [(str(c.path), c.text, c.region, c.held_out) for c in crops]
    rendered = [("", "", REGIONS[i % len(REGIONS)], False) for i in range(recipe.rendered)]
    items = real + rendered
    jobs = [(recipe.seed * 1_000_003 + i, items[i : i + chunk], recipe.views, assets, recipe.whole, recipe.free_texts)
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


def _steps(lines: Lines, row: int, part: str) -> int:
    """A line's number of time steps as the trained part reads it: PP-OCR's (the reader's input
    width over 8), or, tuning the whole reader, that rounded to a multiple of WHOLE_BUCKET."""
    if part != "whole":
        return min(MAX_STEPS, len(lines.features[row]))
    steps = round(int(lines.images[row].shape[1]) / 8)
    return min(MAX_STEPS, max(WHOLE_BUCKET, WHOLE_BUCKET * round(steps / WHOLE_BUCKET)))


def _by_length(lines: Lines, rows: NDArray[np.int64], part: str) -> dict[int, NDArray[np.int64]]:
    """`rows` grouped by their line's number of time steps (`_steps`): a batch is drawn from one
    group, so that no padding enters the neck's attention, which sees a whole line at once."""
    steps = np.array([_steps(lines, i, part) for i in rows])
    return {int(length): rows[steps == length] for length in np.unique(steps)}


def _inputs(lines: Lines, rows: NDArray[np.int64], part: str,
            rng: np.random.Generator | None = None) -> NDArray[np.float32]:  # fmt: skip
    """The trained part's input for lines of one length: the reader's image lines (batch, 3, 48,
    width), each resized to its group's width (with `rng`, each first cut looser or tighter:
    `jittered_line`); the neck's input (batch, channels, 1, steps); or PP-OCR's features (batch,
    steps, 120)."""
    if part == "whole":
        import cv2

        from platestream.workers.engine.default import reader_tensor

        width = 8 * _steps(lines, int(rows[0]), part)
        images = [lines.images[i] if rng is None else jittered_line(lines.images[i], rng) for i in rows]
        return reader_tensor(np.stack([image if image.shape == (48, width, 3) else
                                       cv2.resize(image, (width, 48), interpolation=cv2.INTER_LINEAR)
                                       for image in images]))  # fmt: skip
    if part == "neck":
        return np.stack([lines.neck[i][:MAX_STEPS].T[:, None, :] for i in rows]).astype(np.float32)
    return np.stack([lines.features[i][:MAX_STEPS] for i in rows]).astype(np.float32)


def jittered_line(image: Image, rng: np.random.Generator) -> Image:
    """A reader's input line cut looser or tighter, as the line finder may cut it: each side moved
    out (edge pixels repeated) or in by up to LINE_JITTER of the line's width or height, and its
    contrast and brightness changed a little. Tuning the whole reader on the lines as cut alone left
    it unsure of a clean line cut tight to its characters (GWAGEN read GWAGN; padded, right)."""
    import cv2

    height, width = image.shape[:2]
    left, right = (int(v) for v in np.round(rng.uniform(-LINE_JITTER[0], LINE_JITTER[1], 2) * width))
    top, bottom = (int(v) for v in np.round(rng.uniform(-LINE_JITTER[0], LINE_JITTER[1], 2) * height))
    grown = cv2.copyMakeBorder(image, max(0, top), max(0, bottom), max(0, left), max(0, right), cv2.BORDER_REPLICATE)
    h, w = grown.shape[:2]
    cut = grown[max(0, -top) : h - max(0, -bottom), max(0, -left) : w - max(0, -right)]
    if cut.shape[0] < height // 2 or cut.shape[1] < width // 2:
        cut = image
    gain, shift = rng.uniform(0.8, 1.2), rng.uniform(-20, 20)
    return np.asarray(np.clip(cut.astype(np.float32) * gain + shift, 0, 255), np.uint8)


def exact_reads(
    probabilities: Mapping[int, NDArray[np.float32]] | Sequence[NDArray[np.float32]],
    lines: Lines,
    rows: NDArray[np.int64],
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
    # a head to start from is read first: a wrong file is refused before minutes of cutting
    initial = head_weights(Path(recipe.init_head), recipe.part) if recipe.init_head else None
    initial_trunk = trunk_weights(Path(recipe.init_head), recipe.part) if recipe.init_head and recipe.part != "head" \
        else None  # fmt: skip
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
    trunk = _trunk(recipe.part)
    params, forward, loss_curve, train_seconds = _fit(lines, train_rows, recipe, trunk, initial, initial_trunk)
    head_params = {k: np.asarray(v) for k, v in (params["head"] if trunk else params).items()}
    tuned = onnx_jax.with_weights(trunk, params["trunk"]) if trunk else None
    target = out / "plate-head.onnx"
    if recipe.part == "whole":
        # read as the engine reads: each held-out line at its own width, through the exported
        # head joined to PP-OCR's reader (training saw the line at its group's width)
        # (any share but 0 there: the engine then computes PP-OCR's own output too)
        target.write_bytes(to_onnx(head_params, mix=0.5, trunk=tuned, half=True))
        head, ppocr = _engine_reads(target, lines, held_rows)
    else:
        run = jax.jit(lambda p, x: jax.nn.softmax(forward(p, x), -1))
        head = [np.zeros(0, np.float32)] * len(lines)
        for rows in _by_length(lines, held_rows, recipe.part).values():
            for start in range(0, len(rows), 256):
                chunk = rows[start : start + 256]
                for row, probabilities in zip(chunk, np.asarray(run(params, _inputs(lines, chunk, recipe.part))),
                                              strict=True):  # fmt: skip
                    head[row] = probabilities
        ppocr = [p[:MAX_STEPS].astype(np.float32) for p in lines.ppocr]

    def mixed(share: float, rule: str) -> dict[int, NDArray[np.float32]]:
        return {int(row): mix_distributions(head[row], ppocr[row], share, rule) for row in held_rows}

    by_mix = {(mixing, mix): exact_reads(mixed(mix, mixing), lines, held_rows) for mixing in MIXINGS for mix in MIXES}
    ppocr_alone = exact_reads(mixed(1.0, "linear"), lines, held_rows)
    mixing, mix = choose_mix(by_mix)
    progress(f"held-out exact reads: PP-OCR alone {ppocr_alone}; " +
             "; ".join(f"{r} share {m}: {f}" for (r, m), f in by_mix.items()) + f"; chosen {mixing} {mix}")  # fmt: skip

    model_bytes = to_onnx(head_params, mix=mix, mixing=mixing, version=version, trunk=tuned,
                          half=recipe.part == "whole")  # fmt: skip
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


def choose_mix(by_mix: dict[tuple[str, float], dict[str, float]]) -> tuple[str, float]:
    """The rule and PP-OCR's share whose held-out exact reads (percent per region) sum highest, ties
    to the larger share; PP-OCR's share 0 wherever it reads within SHARE_ZERO_MARGIN points (summed
    over the regions) of that: at share 0 the engine runs the head alone, not PP-OCR's reader beside
    it (for a head that tunes the whole reader, about 60 % less reader time per line)."""
    best = max(by_mix, key=lambda key: (sum(by_mix[key].values()), key[1], key[0]))
    zero = [key for key in by_mix if key[1] == 0]
    if zero:
        alone = max(zero, key=lambda key: (sum(by_mix[key].values()), key[0]))
        if sum(by_mix[alone].values()) >= sum(by_mix[best].values()) - SHARE_ZERO_MARGIN:
            return alone
    return best


def _engine_reads(model: Path, lines: Lines, rows: NDArray[np.int64]) -> tuple[list[Any], list[Any]]:
    """Per line (empty outside `rows`), the head's and PP-OCR's distributions (blank + ALPHABET per
    step) as the engine computes them: the head in `model` joined to PP-OCR's reader in ONNX
    Runtime, the line at its own width."""
    from platestream.workers.engine.default import TextReader, reader_tensor

    reader = TextReader(threads=os.cpu_count() or 1, providers=["CPUExecutionProvider"],
                        head=(model, hashlib.sha256(model.read_bytes()).hexdigest()))  # fmt: skip
    head: list[Any] = [np.zeros(0, np.float32)] * len(lines)
    ppocr: list[Any] = [np.zeros(0, np.float32)] * len(lines)
    for row in rows:
        outputs = reader.reader.run(None, {"x": reader_tensor(lines.images[row])})
        ppocr[row], head[row] = reader.plate_characters(outputs[0][0]), np.asarray(outputs[1][0], np.float32)
    return head, ppocr


def _trunk(part: str) -> onnx_jax.Subgraph | None:
    """The part of PP-OCR's reader tuned with the head, as trainable JAX: its neck (from
    NECK_INPUT) or the whole reader (from its image input, "x"), to the features its last layer
    reads; None for a head alone."""
    if part == "head":
        return None
    import onnx

    from platestream.workers.engine import models
    from platestream.workers.engine.plate_head import NECK_INPUT, features_tensor

    model = onnx.load(str(models.ocr_model(models.OCR_READER)))
    return onnx_jax.extract(model, NECK_INPUT if part == "neck" else "x", features_tensor(model.graph))


def _trunk_start(trunk: onnx_jax.Subgraph, initial: dict[str, NDArray[np.float32]] | None) -> dict[str, Any]:
    """The tuned part's weights to start from: a trained head's copy (`trunk_weights`), or PP-OCR's own."""
    if initial is None:
        return trunk.params
    if not trunk.params.keys() <= initial.keys():
        raise TrainingError("the plate head to start from carries another copy of PP-OCR's reader than this "
                            "engine's: start from a head trained on this version's reader")  # fmt: skip
    return {name: initial[name] for name in trunk.params}


def _fit(
    lines: Lines,
    train_rows: NDArray[np.int64],
    recipe: HeadRecipe,
    trunk: onnx_jax.Subgraph | None,
    initial: dict[str, NDArray[np.float32]] | None = None,
    initial_trunk: dict[str, NDArray[np.float32]] | None = None,
) -> tuple[Any, Callable[..., Any], list[tuple[int, float]], float]:
    """The seeded training loop (CTC, AdamW with cosine decay, dropout, PP-OCR's neck or whole
    reader, the `trunk`, tuned with a smaller rate once the new head has had `warmup` steps): the
    weights, the forward function, the loss every 10 steps and the loop's seconds. `initial`: the
    head's weights to start from (`head_weights`) instead of random ones; `initial_trunk`: the tuned
    part's (`trunk_weights`) instead of PP-OCR's own."""
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
    if initial is not None:
        head = {name: jnp.asarray(value) for name, value in initial.items()}
    params: Any = head
    optimizer = optax.adamw(optax.cosine_decay_schedule(recipe.learning_rate, recipe.steps),
                            weight_decay=recipe.weight_decay)  # fmt: skip
    if trunk is not None:
        params = {"head": head, "trunk": {k: jnp.asarray(v) for k, v in _trunk_start(trunk, initial_trunk).items()}}
        later = optax.cosine_decay_schedule(recipe.neck_learning_rate, max(1, recipe.steps - recipe.warmup))
        trunk_rate = optax.join_schedules([optax.constant_schedule(0.0), later], [recipe.warmup])
        optimizer = optax.multi_transform(
            {"head": optimizer, "trunk": optax.adamw(trunk_rate, weight_decay=recipe.weight_decay)},
            {"head": "head", "trunk": "trunk"},
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
        if trunk is None:
            return head_forward(p, x, dropout_key)
        return head_forward(p["head"], trunk.apply(p["trunk"], x), dropout_key)

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
    every = list(_by_length(lines, train_rows, recipe.part).values())
    groups = [rows for rows in every if len(rows) >= 0.01 * len(train_rows)] or every
    weights = np.array([len(rows) for rows in groups], np.float64)
    loop_started = time.time()
    loss_curve: list[tuple[int, float]] = []
    bar = tqdm(total=recipe.steps, desc=f"training plate head ({recipe.part})", unit="step")
    for done in range(1, recipe.steps + 1):
        rows = rng.choice(groups[rng.choice(len(groups), p=weights / weights.sum())], recipe.batch)
        labels, label_padding = _labels([lines.texts[i] for i in rows])
        batch = (_inputs(lines, rows, recipe.part, rng), labels, label_padding)
        params, opt_state, loss = compiled(params, opt_state, batch, jax.random.fold_in(key, done))
        if done % 10 == 0 or done == recipe.steps:
            loss_curve.append((done, round(float(loss), 4)))
            bar.set_postfix(loss=f"{loss_curve[-1][1]:.3f}")
        bar.update(1)
    bar.close()

    return params, forward, loss_curve, time.time() - loop_started


def _checked_head(model: Path, part: str) -> tuple[str, dict[str, NDArray[Any]]]:
    """A trained head's file read once and checked to start a training of `part` from: what it
    reads (`_READS`) and its tensors by name."""
    import onnx
    from onnx import numpy_helper

    try:
        head = onnx.load(str(model))
    except Exception as error:  # a missing file raises OSError, a damaged one DecodeError and others
        raise TrainingError(f"cannot start from the plate head {model}: {error}") from None
    meta = {entry.key: entry.value for entry in head.metadata_props}
    if meta.get("alphabet") != ALPHABET or meta.get("features") != str(FEATURES):
        raise TrainingError(f"{model} is not a plate head of {FEATURES} features for {ALPHABET}")
    reads = meta.get("reads", "")
    # a last-layer head starts any training: a part it does not tune starts from PP-OCR's own weights
    if reads not in ("", _READS[part]):
        tunes = next((name for name, value in _READS.items() if value == reads), "an unknown part")
        raise TrainingError(f"cannot start from the plate head {model}: it tunes {_TUNES.get(tunes, tunes)}, "
                            f"this training {_TUNES[part]}; train with {_OPTION[tunes]} to start from it")  # fmt: skip
    return reads, {t.name: numpy_helper.to_array(t) for t in head.graph.initializer}


def head_weights(model: Path, part: str = "head") -> dict[str, NDArray[np.float32]]:
    """A trained head's weights as training holds them (`to_onnx`'s inverse), to start a training
    from: a head for this alphabet that tunes the same `part` of PP-OCR's reader as the training
    ("head": none, on PP-OCR's own features; "neck"; "whole"), its tuned copy read by
    `trunk_weights`, or a head of the last layer alone (it starts any training)."""
    _, tensors = _checked_head(model, part)
    if not {"w1", "b1", "w2", "b2"} <= tensors.keys():
        raise TrainingError(f"{model} lacks the head's weights w1, b1, w2, b2")
    w1, w2 = tensors["w1"], tensors["w2"]  # (hidden, FEATURES, 3) and (classes, hidden, 1): convolutions
    return {
        "w1": np.ascontiguousarray(w1.transpose(2, 1, 0).reshape(3 * FEATURES, w1.shape[0]), np.float32),
        "b1": np.asarray(tensors["b1"], np.float32),
        "w2": np.ascontiguousarray(w2[:, :, 0].T, np.float32),
        "b2": np.asarray(tensors["b2"], np.float32),
    }


def trunk_weights(model: Path, part: str) -> dict[str, NDArray[np.float32]] | None:
    """The tuned copy of PP-OCR's neck or whole reader (`part`) a head carries, as training holds
    it (the trunk's parameters by their names in PP-OCR's graph), to start a training from; None
    for a head of the last layer alone, whose training starts the part from PP-OCR's own weights."""
    reads, tensors = _checked_head(model, part)  # the same checks as `head_weights`, one read of the file
    if not reads:
        return None
    prefix = "neck/" if _READS[part] == NECK_INPUT else "reader/"
    return {name[len(prefix):]: np.asarray(value, np.float32) for name, value in tensors.items()
            if name.startswith(prefix)}  # fmt: skip


def to_onnx(params: dict[str, NDArray[Any]], *, mix: float, mixing: str = "geometric", version: str = "",
            trunk: Any = None, half: bool = False) -> bytes:  # fmt: skip
    """The head as an ONNX graph (opset 11, PP-OCR's reader's own) from `features` (batch, steps,
    120) to `plate_probabilities` (batch, steps, blank + 36): the neighbour-concatenating layer is a
    convolution of width 3 over the steps. With `trunk` (the tuned copy of PP-OCR's neck or whole
    reader, an ONNX model from NECK_INPUT or from the reader's image input "x" to the features), the
    head reads that input instead, through the copy, and says so in its metadata (`reads`).
    `half`: the weights stored at half precision (`store_at_half`)."""
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
    reads = trunk.graph.input[0].name if trunk is not None else ""
    prefix = "neck/" if reads == NECK_INPUT else "reader/"
    features = HEAD_INPUT if trunk is None else prefix + trunk.graph.output[0].name
    input_shape: list[Any] = ["batch", "steps", FEATURES]
    metadata = {"alphabet": ALPHABET, "mix": str(mix), "mixing": mixing, "features": str(FEATURES),
                "version": version}  # fmt: skip
    if trunk is not None:
        dims = trunk.graph.input[0].type.tensor_type.shape.dim
        input_shape = [dim.dim_value or dim.dim_param or f"d{i}" for i, dim in enumerate(dims)]
        metadata["reads"] = reads
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
    if trunk is not None:  # the tuned part's nodes first (graphs list nodes in order of use)
        copy_graph(trunk.graph, graph, prefix, {reads: HEAD_INPUT})
    graph.node.extend(nodes)
    if half:
        store_at_half(graph)
        metadata["weights"] = "float16"
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="platestream")
    model.ir_version = 7
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    return bytes(model.SerializeToString())


HALF_MIN_SIZE = 64  # smaller weights (a norm's epsilon, a scale) stay float32: they weigh nothing
HALF_MAX = 65504.0  # the largest float16


def store_at_half(graph: Any) -> int:
    """`graph`'s float32 weights (onnx.GraphProto, changed in place) stored as float16 under their
    own names, each widened back by a Cast node that its users read: half the file, and the same
    computation in float32 (ONNX Runtime folds the casts when it loads the model). The whole tuned
    reader's 12.5 MB become 6.3; its reads on the held-out lines and the photographs are unchanged
    (BENCHMARKS.md, "The US head at half precision"). Weights under HALF_MIN_SIZE values or beyond
    float16's range stay float32. Returns how many were stored at half."""
    from onnx import TensorProto, helper, numpy_helper

    widened: dict[str, str] = {}
    for tensor in graph.initializer:
        if tensor.data_type != TensorProto.FLOAT:
            continue
        value = numpy_helper.to_array(tensor)
        if value.size < HALF_MIN_SIZE or not np.all(np.abs(value) <= HALF_MAX):
            continue
        tensor.CopyFrom(numpy_helper.from_array(value.astype(np.float16), tensor.name))
        widened[tensor.name] = f"{tensor.name}/float"
    for node in graph.node:
        for index, name in enumerate(node.input):
            if name in widened:
                node.input[index] = widened[name]
    casts = [helper.make_node("Cast", [name], [wide], name=f"{name}/widen", to=TensorProto.FLOAT)
             for name, wide in widened.items()]  # fmt: skip
    users = list(graph.node)
    del graph.node[:]
    graph.node.extend([*casts, *users])  # the casts before their users: graphs list nodes in order of use
    return len(widened)
