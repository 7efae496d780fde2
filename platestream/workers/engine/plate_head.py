"""The project's plate head on PP-OCR's reader (`platestream train head`).

PP-OCR's reader ends in one layer from 120 features per time step to 18,000 characters of every
script. The plate head is a small network the project trains on plates (see the model card) from
the same features to a blank and the 36 plate characters. It is joined to PP-OCR's graph when the
engine starts (reader `ppocr-head`, the default), so that one run of the reader gives both: the
engine reads a plate from the two distributions mixed (`mix_distributions`: the head's metadata says
how, `mixing`, and PP-OCR's share, `mix`). A head trained with part of PP-OCR's reader tuned (its
neck, or the whole reader) carries that part's tuned copy and reads the tensor its metadata names
(`reads`: the neck's input, or the reader's image input "x").

The head ships inside the package with its SHA-256 pinned here; a missing, changed or corrupt file
is refused with an error that says so.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from platestream.errors import MissingExtraError, PlatestreamError
from platestream.workers.engine.models import flush_denormals, pinned_file

HEAD_FILE = Path(__file__).parent / "data" / "plate-head.onnx"
HEAD_SHA256 = "44587b24a2a9f6da4d5cac6ee7d58d5dafeeae6662c4377c6b02d01c3b2b1632"
# Regions read with a head of their own instead (the model card says why): US plates with a head
# that tunes PP-OCR's whole reader, alone (PP-OCR's share 0).
US_HEAD_FILE = Path(__file__).parent / "data" / "plate-head-us.onnx"
US_HEAD_SHA256 = "74c97fb42a09d91e55f6094df5309016a3ccb75b2c0063ec607db52cea2d7d38"
REGION_HEADS: dict[str, tuple[Path, str]] = {"us": (US_HEAD_FILE, US_HEAD_SHA256)}
HEAD_INPUT = "features"
HEAD_OUTPUT = "plate_probabilities"
_PREFIX = "plate_head/"
# PP-OCRv6 small's neck (two convolutions and two transformer blocks before its last layer) reads
# this tensor: a head that tunes the neck carries a copy of it and reads from here.
NECK_INPUT = "p2o.pd_op.pool2d.1.0"


# How the two distributions are mixed per time step, PP-OCR's share `mix`: "linear" adds them
# (heads exported before `mixing` was written mix so); "geometric" multiplies them, each raised to
# its share, and renormalises (a product of experts: a character both readers find likely
# stands out, one that either rules out falls away).
MIXINGS = ("linear", "geometric")
_FLOOR = 1e-8


class HeadModelError(PlatestreamError):
    """The plate head's model file is missing, changed, unreadable or does not fit the reader."""


@dataclass(frozen=True)
class JoinedReader:
    """PP-OCR's reader with the plate head joined: its bytes for ONNX Runtime, the names of its
    outputs (PP-OCR's characters, the head's plate characters, in that order), the head's alphabet and the
    share of PP-OCR's distribution in the mix and how the two are mixed (`MIXINGS`), and the
    classes of PP-OCR's output."""

    model: bytes
    ppocr_output: str | None  # None: PP-OCR's share is 0, its own output is not computed
    head_output: str
    alphabet: str
    mix: float
    mixing: str = "linear"
    characters: tuple[str, ...] = ()  # PP-OCR's output classes, in order (`dictionary`, narrowed)


def mix_distributions(head: NDArray[np.float32], ppocr: NDArray[np.float32], share: float,
                      mixing: str) -> NDArray[np.float32]:  # fmt: skip
    """Per time step (rows), the head's and PP-OCR's distributions over the same classes mixed with
    PP-OCR's `share`; `ppocr` is renormalised first (the characters it gives outside the plate
    alphabet are left out)."""
    ppocr = ppocr / np.maximum(ppocr.sum(-1, keepdims=True), 1e-6)
    if mixing == "linear":
        return np.asarray((1 - share) * head + share * ppocr, np.float32)
    if mixing != "geometric":
        raise HeadModelError(f"unknown mixing {mixing!r}; known: {', '.join(MIXINGS)}")
    logs = (1 - share) * np.log(np.maximum(head, _FLOOR)) + share * np.log(np.maximum(ppocr, _FLOOR))
    mixed = np.exp(logs - logs.max(-1, keepdims=True))
    return np.asarray(mixed / mixed.sum(-1, keepdims=True), np.float32)


def verify(path: Path, sha256: str) -> bytes:
    """The head's bytes, refused unless their SHA-256 is `sha256`."""
    return pinned_file(path, sha256, what="the plate head", error=HeadModelError,
                       if_missing="read with PP-OCR alone (PLATESTREAM_READER=ppocr), or point the engine at a "
                       "trained head (`platestream train head` prints its path and SHA-256)")  # fmt: skip


def features_tensor(graph: Any) -> str:
    """The name of the tensor PP-OCR's last layer reads (time steps x features): found by walking
    back from the graph's output through Softmax, Identity and Add to the final MatMul."""
    return _last_layer(graph).input[0]  # type: ignore[no-any-return]


def _features_per_step(graph: Any) -> int:
    """How many features per time step the last layer reads (its weight's first dimension)."""
    weight = _last_layer(graph).input[1]
    for tensor in graph.initializer:
        if tensor.name == weight:
            return int(tensor.dims[0])
    raise HeadModelError("PP-OCR's reader's last layer has no weight the plate head can size itself by")


def _last_layer(graph: Any) -> Any:
    producer = {output: node for node in graph.node for output in node.output}
    name = graph.output[0].name
    for _ in range(8):
        node = producer.get(name)
        if node is None:
            break
        if node.op_type == "MatMul":
            return node
        if node.op_type not in {"Softmax", "Identity", "Add"}:
            break
        name = node.input[0]
    raise HeadModelError("PP-OCR's reader does not end in the layer the plate head replaces (MatMul, Add, Softmax)")


def join(reader: Path, head: Path, sha256: str, *, narrow: bool = True) -> JoinedReader:
    """PP-OCR's reader model with the head's nodes appended, reading the reader's features.
    `narrow`: PP-OCR's last layer computes only the classes the engine reads (`plate_columns`,
    `narrow_last_layer`)."""
    try:
        import onnx
    except ImportError:
        raise MissingExtraError("onnx", "engine") from None
    data = verify(head, sha256)
    try:
        head_model = onnx.load_from_string(data)
    except Exception as error:  # onnx raises DecodeError and others for a damaged file
        raise HeadModelError(f"the plate head {head} is not an ONNX model: {error}") from None
    meta = {entry.key: entry.value for entry in head_model.metadata_props}
    if not {"alphabet", "mix", "features"} <= meta.keys():
        raise HeadModelError(f"the plate head {head} lacks alphabet, mix or features in its metadata")
    mixing = meta.get("mixing", "linear")
    if mixing not in MIXINGS:
        raise HeadModelError(f"the plate head {head} mixes {mixing!r}, which this engine does not know "
                             f"({', '.join(MIXINGS)}): upgrade platestream or retrain the head")  # fmt: skip
    model = onnx.load(str(reader))
    features = meta.get("reads") or features_tensor(model.graph)
    known = {name for node in model.graph.node for name in node.output} | {i.name for i in model.graph.input}
    if "reads" in meta and features not in known:
        raise HeadModelError(f"the plate head reads PP-OCR's tensor {features!r}, which {reader.name} does not have: "
                             "pin rapidocr to 3.x or retrain the head (platestream train head)")  # fmt: skip
    expected = int(meta.get("features", "0"))
    if _features_per_step(model.graph) != expected:
        raise HeadModelError(f"the plate head reads {expected} features per step, {reader.name} gives "
                             f"{_features_per_step(model.graph)}: pin rapidocr to 3.x or retrain the head "
                             "(platestream train head)")  # fmt: skip

    characters = dictionary({entry.key: entry.value for entry in model.metadata_props}.get("character", ""))
    if not set(meta["alphabet"]) <= set(characters):
        raise HeadModelError(f"{reader.name} lists no dictionary with the plate head's characters in its metadata: "
                             "pin rapidocr to 3.x")  # fmt: skip
    if narrow:
        columns = plate_columns(characters, meta["alphabet"])
        narrow_last_layer(model.graph, columns)
        characters = [characters[column] for column in columns]
    copy_graph(head_model.graph, model.graph, _PREFIX, {HEAD_INPUT: features})
    head_output = _PREFIX + HEAD_OUTPUT
    model.graph.output.append(onnx.helper.make_tensor_value_info(head_output, onnx.TensorProto.FLOAT, None))
    ppocr_output: str | None = model.graph.output[0].name
    if float(meta["mix"]) == 0:
        # the mix takes nothing from PP-OCR: what only its output needs (its last layer; for a head
        # carrying a tuned copy of the whole reader, all of PP-OCR's own reader) is not computed
        keep_only(model.graph, head_output)
        ppocr_output = None
    flush_denormals(model)  # PP-OCR's weights and a tuned copy's
    return JoinedReader(model.SerializeToString(), ppocr_output, head_output, meta["alphabet"],
                        float(meta["mix"]), mixing, tuple(characters))  # fmt: skip


def keep_only(graph: Any, output: str) -> None:
    """`graph` (changed in place) computing its output `output` alone: the other outputs, and the
    nodes and initializers only they need, are dropped."""
    producer = {name: node for node in graph.node for name in node.output}
    needed: set[str] = set()
    pending = [output]
    while pending:
        name = pending.pop()
        if name in needed:
            continue
        needed.add(name)
        node = producer.get(name)
        if node is not None:
            pending.extend(name for name in node.input if name)
            pending.extend(_outer_names(node))
    kept = [node for node in graph.node if any(name in needed for name in node.output)]
    del graph.node[:]
    graph.node.extend(kept)
    initializers = [tensor for tensor in graph.initializer if tensor.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(initializers)
    outputs = [info for info in graph.output if info.name == output]
    del graph.output[:]
    graph.output.extend(outputs)


def _outer_names(node: Any) -> list[str]:
    """The names a node's subgraphs (If, Loop, Scan) read, the enclosing graph's among them."""
    names: list[str] = []
    for attribute in node.attribute:
        subgraphs = [attribute.g] if attribute.HasField("g") else []
        for subgraph in [*subgraphs, *attribute.graphs]:
            names.extend(name for inner in subgraph.node for name in inner.input if name)
            names.extend(name for inner in subgraph.node for name in _outer_names(inner))
    return names


def dictionary(character: str) -> list[str]:
    """PP-OCR's output classes from its reader's `character` metadata (one per line): the CTC
    blank, those characters, a space."""
    return ["<blank>", *character.splitlines(), " "]


def separator_columns(characters: Sequence[str]) -> list[int]:
    """The classes of a reader's dictionary that are separators, not characters: punctuation,
    symbols and spaces (Unicode categories P, S and Z)."""
    return [i for i, char in enumerate(characters) if len(char) == 1 and unicodedata.category(char)[0] in "PSZ"]


def plate_columns(characters: Sequence[str], alphabet: str) -> list[int]:
    """The classes of PP-OCR's dictionary the engine reads a plate from: the blank, the
    separators, and the alphabet's characters in either case."""
    wanted = set(alphabet) | {char.lower() for char in alphabet}
    separators = set(separator_columns(characters))
    return [i for i, char in enumerate(characters) if i == 0 or i in separators or char in wanted]


def narrow_last_layer(graph: Any, columns: Sequence[int]) -> None:
    """PP-OCR's last layer (`graph`, changed in place) computing only the classes `columns` of its
    18,710, its softmax over those alone. The engine mixing PP-OCR with the head renormalises
    PP-OCR's distribution over the plate's classes anyway, so the mix is unchanged, and the layer
    costs a tenth: 2 of the reader's 11 ms per plate on one core went to the classes of other
    scripts."""
    from onnx import numpy_helper

    last = _last_layer(graph)
    consumers = [node for node in graph.node if last.output[0] in node.input]
    bias = None
    if len(consumers) == 1 and consumers[0].op_type == "Add":
        bias = next(name for name in consumers[0].input if name != last.output[0])
    chosen = np.asarray(columns, dtype=np.int64)
    classes = next(int(t.dims[-1]) for t in graph.initializer if t.name == last.input[1])
    for info in [*graph.value_info, *graph.output]:  # the shapes after the layer say how many classes
        dims = info.type.tensor_type.shape.dim
        if dims and dims[-1].HasField("dim_value") and dims[-1].dim_value == classes:
            dims[-1].dim_value = len(chosen)
    for tensor in graph.initializer:
        if tensor.name in (last.input[1], bias):  # the weight (features x classes) and the bias
            kept = numpy_helper.to_array(tensor)[..., chosen]
            tensor.CopyFrom(numpy_helper.from_array(kept, tensor.name))


def copy_graph(source: Any, target: Any, prefix: str, renames: dict[str, str]) -> None:
    """Append `source`'s nodes and initializers (onnx.GraphProto) to `target`, every name prefixed
    by `prefix` except those in `renames`, which take the name given there."""
    import onnx

    def renamed(name: str) -> str:
        return renames.get(name, prefix + name if name else name)

    for node in source.node:
        copy = onnx.NodeProto()
        copy.CopyFrom(node)
        copy.name = prefix + node.name
        copy.ClearField("input")
        copy.ClearField("output")
        copy.input.extend(renamed(name) for name in node.input)
        copy.output.extend(renamed(name) for name in node.output)
        target.node.append(copy)
    for tensor in source.initializer:
        copy_tensor = onnx.TensorProto()
        copy_tensor.CopyFrom(tensor)
        copy_tensor.name = renamed(tensor.name)
        target.initializer.append(copy_tensor)
