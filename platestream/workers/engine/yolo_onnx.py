"""Convert an Ultralytics YOLOv8 detection checkpoint (.pt) to ONNX without torch.

The checkpoint is a zip holding a pickle of the whole model. It is unpickled with stand-ins for
torch and Ultralytics classes (nothing of theirs is imported or run), its layers are read from the
module tree, batch-norm is folded into the convolutions, and an equivalent ONNX graph is written.
The graph returns the raw head: [batch, 4 * reg_max + classes, anchors]; `decode_yolo` turns it
into boxes.
"""

from __future__ import annotations

import collections
import copyreg
import io
import pickle
import zipfile
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from platestream.errors import PlatestreamError

_STORAGE_DTYPES = {
    "HalfStorage": np.float16,
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "BoolStorage": np.bool_,
    "ByteStorage": np.uint8,
}


class CheckpointError(PlatestreamError):
    """The checkpoint is not a YOLOv8 detection model this converter understands."""


class _Stub:
    """Stands in for any class of the checkpoint; keeps the state it is given."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._args = args

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[1], dict):
            state = state[0] or state[1]
        if isinstance(state, dict):
            self.__dict__.update(state)
        else:
            self.__dict__["_state"] = state


@dataclass(frozen=True)
class _StorageType:
    dtype: Any


def _rebuild_tensor(storage: NDArray[Any], offset: int, size: tuple[int, ...], stride: tuple[int, ...], *_: Any) -> Any:
    item = storage.itemsize
    view = np.lib.stride_tricks.as_strided(storage[offset:], shape=tuple(size), strides=tuple(s * item for s in stride))
    return np.array(view, dtype=np.float32 if storage.dtype == np.float16 else storage.dtype)


def _rebuild_parameter(data: Any, *_: Any) -> Any:
    return data


class _Unpickler(pickle.Unpickler):
    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str) -> None:
        super().__init__(io.BytesIO(data))
        self._archive = archive
        self._prefix = prefix
        self._stubs: dict[str, type] = {}

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _rebuild_parameter
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "copyreg" and name == "_reconstructor":
            return copyreg._reconstructor  # type: ignore[attr-defined]
        if module in ("__builtin__", "builtins") and name in ("set", "frozenset", "slice", "getattr", "object"):
            return getattr(__import__("builtins"), name)
        key = f"{module}.{name}"
        if key not in self._stubs:
            self._stubs[key] = type(name, (_Stub,), {"_qualname": key})
        return self._stubs[key]

    def persistent_load(self, pid: Any) -> Any:
        _, storage_type, key, _location, numel = pid
        raw = self._archive.read(f"{self._prefix}/data/{key}")
        return np.frombuffer(raw, dtype=storage_type.dtype, count=numel)


def load_checkpoint(data: bytes) -> Any:
    """The unpickled checkpoint, its tensors as numpy arrays and its modules as stand-ins."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise CheckpointError("not a torch zip checkpoint") from None
    pickles = [name for name in archive.namelist() if name.endswith("/data.pkl")]
    if len(pickles) != 1:
        raise CheckpointError(f"expected one data.pkl in the checkpoint, found {pickles}")
    prefix = pickles[0].removesuffix("/data.pkl")
    return _Unpickler(archive.read(pickles[0]), archive, prefix).load()


def _kind(module: Any) -> str:
    return str(getattr(type(module), "_qualname", type(module).__name__)).rsplit(".", 1)[-1]


def _children(module: Any) -> dict[str, Any]:
    children: dict[str, Any] = module.__dict__.get("_modules", {})
    return children


def _params(module: Any) -> dict[str, Any]:
    return {**module.__dict__.get("_parameters", {}), **module.__dict__.get("_buffers", {})}


@dataclass
class _Graph:
    nodes: list[Any] = field(default_factory=list)
    initializers: list[Any] = field(default_factory=list)
    count: int = 0

    def name(self, hint: str) -> str:
        self.count += 1
        return f"{hint}_{self.count}"

    def const(self, value: NDArray[Any], hint: str) -> str:
        from onnx import numpy_helper

        name = self.name(hint)
        self.initializers.append(numpy_helper.from_array(value, name))
        return name

    def op(self, op_type: str, inputs: list[str], hint: str = "", **attrs: Any) -> str:
        from onnx import helper

        out = self.name(hint or op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], **attrs))
        return out

    def split(self, x: str, sizes: list[int]) -> list[str]:
        from onnx import helper

        outs = [self.name("split") for _ in sizes]
        split = self.const(np.array(sizes, dtype=np.int64), "split_sizes")
        self.nodes.append(helper.make_node("Split", [x, split], outs, axis=1))
        return outs


def _conv2d(g: _Graph, x: str, conv: Any, bn: Any | None = None) -> str:
    params = _params(conv)
    weight = np.asarray(params["weight"], dtype=np.float32)
    bias = np.asarray(params["bias"], dtype=np.float32) if params.get("bias") is not None else None
    if bn is not None:  # fold batch-norm into the convolution
        bnp = _params(bn)
        scale = np.asarray(bnp["weight"]) / np.sqrt(np.asarray(bnp["running_var"]) + bn.eps)
        weight = weight * scale[:, None, None, None]
        bias = np.asarray(bnp["bias"]) - np.asarray(bnp["running_mean"]) * scale + (0 if bias is None else bias * scale)
    inputs = [x, g.const(weight.astype(np.float32), "w")]
    if bias is not None:
        inputs.append(g.const(np.asarray(bias, dtype=np.float32), "b"))
    pad = list(conv.padding) if isinstance(conv.padding, (tuple, list)) else [conv.padding] * 2
    return g.op(
        "Conv",
        inputs,
        "conv",
        kernel_shape=list(weight.shape[2:]),
        strides=list(conv.stride),
        pads=pad + pad,
        dilations=list(conv.dilation),
        group=int(conv.groups),
    )


def _silu(g: _Graph, x: str) -> str:
    return g.op("Mul", [x, g.op("Sigmoid", [x])], "silu")


def _conv_block(g: _Graph, x: str, module: Any) -> str:
    children = _children(module)
    y = _conv2d(g, x, children["conv"], children.get("bn"))
    act = children.get("act")
    if act is not None and _kind(act) == "SiLU":
        return _silu(g, y)
    if act is not None and _kind(act) != "Identity":
        raise CheckpointError(f"unsupported activation {_kind(act)}")
    return y


def _layer(g: _Graph, module: Any, inputs: list[str]) -> str:
    kind = _kind(module)
    children = _children(module)
    if kind == "Conv":
        return _conv_block(g, inputs[0], module)
    if kind == "C2f":
        y = g.split(_conv_block(g, inputs[0], children["cv1"]), [module.c, module.c])
        for bottleneck in _children(children["m"]).values():
            parts = _children(bottleneck)
            out = _conv_block(g, _conv_block(g, y[-1], parts["cv1"]), parts["cv2"])
            y.append(g.op("Add", [y[-1], out]) if bottleneck.add else out)
        return _conv_block(g, g.op("Concat", y, axis=1), children["cv2"])
    if kind == "SPPF":
        pool = children["m"]
        k = int(pool.kernel_size)
        y = [_conv_block(g, inputs[0], children["cv1"])]
        for _ in range(3):
            y.append(g.op("MaxPool", [y[-1]], kernel_shape=[k, k], strides=[1, 1], pads=[k // 2] * 4))
        return _conv_block(g, g.op("Concat", y, axis=1), children["cv2"])
    if kind == "Upsample":
        scales = g.const(np.array([1, 1, module.scale_factor, module.scale_factor], dtype=np.float32), "scales")
        return g.op("Resize", [inputs[0], "", scales], mode="nearest")
    if kind == "Concat":
        return g.op("Concat", inputs, axis=int(module.d))
    raise CheckpointError(f"unsupported layer {kind}")


def _detect_head(g: _Graph, module: Any, inputs: list[str]) -> str:
    children = _children(module)
    levels = []
    for index, x in enumerate(inputs):
        outs = []
        for branch in ("cv2", "cv3"):
            seq = list(_children(_children(children[branch])[str(index)]).values())
            y = x
            for part in seq[:-1]:
                y = _conv_block(g, y, part)
            outs.append(_conv2d(g, y, seq[-1]))
        merged = g.op("Concat", outs, axis=1)
        shape = g.const(np.array([0, 0, -1], dtype=np.int64), "shape")
        levels.append(g.op("Reshape", [merged, shape]))
    return g.op("Concat", levels, "head", axis=2)


@dataclass(frozen=True)
class YoloModel:
    onnx_bytes: bytes
    strides: tuple[int, ...]
    reg_max: int
    names: tuple[str, ...]


def convert(checkpoint: bytes) -> YoloModel:
    """Convert a YOLOv8 detection checkpoint to an ONNX model (float32, dynamic batch and size)."""
    from onnx import TensorProto, checker, helper

    root = load_checkpoint(checkpoint)
    model = root.get("ema") or root.get("model") if isinstance(root, dict) else root
    if model is None or "model" not in _children(model):
        raise CheckpointError("the checkpoint holds no model")
    layers = list(_children(_children(model)["model"]).values())
    g = _Graph()
    outputs: list[str] = []
    x = "images"
    head = None
    for layer in layers:
        sources = layer.f if isinstance(layer.f, list) else [layer.f]
        inputs = [x if source == -1 else outputs[source] for source in sources]
        if _kind(layer) == "Detect":
            head = layer
            x = _detect_head(g, layer, inputs)
        else:
            x = _layer(g, layer, inputs)
        outputs.append(x)
    if head is None:
        raise CheckpointError("the model has no Detect head")
    graph = helper.make_graph(
        g.nodes,
        "yolov8",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, "height", "width"])],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["batch", "channels", "anchors"])],
        g.initializers,
    )
    onnx_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="platestream")
    onnx_model.ir_version = 8
    checker.check_model(onnx_model)
    names_attr = getattr(model, "names", None) or {0: "plate"}
    names = tuple(str(names_attr[key]) for key in sorted(names_attr)) if isinstance(names_attr, dict) else ("plate",)
    strides = tuple(int(s) for s in np.asarray(head.stride).ravel())
    return YoloModel(onnx_model.SerializeToString(), strides, int(head.reg_max), names)
