"""The trained reader as an ONNX graph (opset 17) that ONNX Runtime runs without any training
framework: batch norm folded into the convolutions, the same attention layers as `model.py`, and
the facts the engine needs in the model's metadata (alphabet, pad class, input size, version)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import numpy as np

from platestream.training.model import ALPHABET, BN_EPS, PAD, Architecture, Params

OPSET = 17
INPUT = "image"


class _Graph:
    def __init__(self) -> None:
        from onnx import helper, numpy_helper

        self.helper, self.numpy_helper = helper, numpy_helper
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._count = 0

    def name(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def const(self, hint: str, value: Any, dtype: Any = np.float32) -> str:
        name = self.name(hint)
        self.initializers.append(self.numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def op(self, kind: str, inputs: list[str], hint: str | None = None, **attributes: Any) -> str:
        output = self.name(hint or kind.lower())
        self.nodes.append(self.helper.make_node(kind, inputs, [output], **attributes))
        return output

    def linear(self, x: str, p: dict[str, Any], hint: str) -> str:
        return self.op(
            "Add", [self.op("MatMul", [x, self.const(f"{hint}_w", p["w"])]), self.const(f"{hint}_b", p["b"])]
        )

    def layer_norm(self, x: str, p: dict[str, Any], hint: str) -> str:
        scale, bias = self.const(f"{hint}_scale", p["scale"]), self.const(f"{hint}_bias", p["bias"])
        return self.op("LayerNormalization", [x, scale, bias], hint, axis=-1, epsilon=1e-5)

    def attention(self, queries: str, keys: str, p: dict[str, Any], arch: Architecture, hint: str) -> str:
        head = arch.dim // arch.heads
        split = self.const("split_heads", [0, -1, arch.heads, head], np.int64)
        q = self.op("Transpose", [self.op("Reshape", [self.linear(queries, p["q"], f"{hint}_q"), split])],
                    perm=[0, 2, 1, 3])  # fmt: skip
        k = self.op("Transpose", [self.op("Reshape", [self.linear(keys, p["k"], f"{hint}_k"), split])],
                    perm=[0, 2, 3, 1])  # fmt: skip
        v = self.op("Transpose", [self.op("Reshape", [self.linear(keys, p["v"], f"{hint}_v"), split])],
                    perm=[0, 2, 1, 3])  # fmt: skip
        scores = self.op("Mul", [self.op("MatMul", [q, k]), self.const("scale", 1.0 / np.sqrt(head))])
        mixed = self.op("MatMul", [self.op("Softmax", [scores], axis=-1), v])
        merged = self.op("Reshape", [self.op("Transpose", [mixed], perm=[0, 2, 1, 3]),
                                     self.const("merge_heads", [0, -1, arch.dim], np.int64)])  # fmt: skip
        return self.linear(merged, p["o"], f"{hint}_o")

    def mlp(self, x: str, block: dict[str, Any], hint: str) -> str:
        hidden = self.op("Relu", [self.linear(self.layer_norm(x, block["norm2"], f"{hint}_norm2"), block["mlp1"],
                                              f"{hint}_mlp1")])  # fmt: skip
        return self.op("Add", [x, self.linear(hidden, block["mlp2"], f"{hint}_mlp2")])


def to_onnx(
    params: Params, stats: Params, arch: Architecture, *, version: str, extra: dict[str, str] | None = None
) -> bytes:
    """The serialised ONNX model: input `image` (batch, 3, height, width) RGB scaled to -1..1;
    outputs `probabilities` (batch, slots, classes; class 0 is the pad) and `box`."""
    import onnx
    from onnx import TensorProto, helper

    g = _Graph()
    x = INPUT
    for index, (layer, stat, (_, stride)) in enumerate(zip(params["stem"], stats["stem"], arch.stem, strict=True)):
        weight = np.asarray(layer["w"], np.float32)  # HWIO
        factor = np.asarray(layer["bn"]["scale"]) / np.sqrt(np.asarray(stat["var"]) + BN_EPS)
        folded = (weight * factor).transpose(3, 2, 0, 1)
        bias = np.asarray(layer["bn"]["bias"]) - np.asarray(stat["mean"]) * factor
        x = g.op("Conv", [x, g.const(f"conv{index}_w", folded), g.const(f"conv{index}_b", bias)], f"conv{index}",
                 kernel_shape=[3, 3], strides=list(stride), auto_pad="SAME_UPPER")  # fmt: skip
        x = g.op("Relu", [x])
    flat = g.op("Reshape", [x, g.const("tokens_shape", [0, arch.dim, -1], np.int64)])
    tokens = g.op("Add", [g.op("Transpose", [flat], perm=[0, 2, 1]), g.const("position", params["position"])])
    enc = params["encoder"]
    normed = g.layer_norm(tokens, enc["norm1"], "enc_norm1")
    tokens = g.op("Add", [tokens, g.attention(normed, normed, enc["attention"], arch, "enc_attn")])
    tokens = g.mlp(tokens, enc, "enc")
    flat = params["flat"]
    narrow = g.linear(g.layer_norm(tokens, flat["norm"], "flat_norm"), flat["narrow"], "flat_narrow")
    flattened = g.op("Reshape", [narrow, g.const("flatten", [0, -1], np.int64)])
    hidden = g.op("Relu", [g.linear(flattened, flat["hidden"], "flat_hidden")])
    logits = g.op("Reshape", [g.linear(hidden, flat["out"], "flat_out"),
                              g.const("slots_shape", [0, arch.slots, arch.classes], np.int64)])  # fmt: skip
    g.nodes.append(helper.make_node("Softmax", [logits], ["probabilities"], axis=-1))
    pooled = g.layer_norm(g.op("ReduceMean", [tokens], axes=[1], keepdims=0), params["box"]["norm"], "box_norm")
    g.nodes.append(helper.make_node("Sigmoid", [g.linear(pooled, params["box"]["dense"], "box")], ["box"]))
    graph = helper.make_graph(
        g.nodes,
        "plate_reader",
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["batch", 3, arch.height, arch.width])],
        [
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", arch.slots, arch.classes]),
            helper.make_tensor_value_info("box", TensorProto.FLOAT, ["batch", 4]),
        ],
        g.initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="platestream")
    model.ir_version = 8  # readable by ONNX Runtime 1.15 and later
    metadata = {
        "alphabet": ALPHABET,
        "pad_class": str(PAD),
        "slots": str(arch.slots),
        "input_height": str(arch.height),
        "input_width": str(arch.width),
        "input_format": "RGB, (pixel / 255 - 0.5) / 0.5, NCHW",
        "version": version,
        "architecture": json.dumps(dataclasses.asdict(arch)),
        **(extra or {}),
    }
    onnx.helper.set_model_props(model, metadata)
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())
