"""A part of an ONNX graph run as a JAX function whose weights can be trained, then written back.

The plate head fine-tunes the last layers of PP-OCR's reader (its "neck": two convolutions, two
transformer blocks) on plates, and the operators known here run the whole reader too, from its
image input, for tuning its backbone. Rather than rebuild those layers by hand, the graph's own
nodes are evaluated with jax.numpy and jax.lax from a chosen input tensor to a chosen output, its
float weights taken as parameters; after training they replace the initializers of the same
nodes, so the exported model is PP-OCR's own graph with new numbers. Only the operators PP-OCR's
reader uses are known: another graph is refused by name when extracted, not run wrongly, and so is
an attribute not supported (a pooling's ceil_mode or dilation).

Shapes stay static under `jax.jit`: a Shape node gives a NumPy array, and nodes whose inputs are
all NumPy (shape arithmetic) are computed with NumPy, so Reshape sees concrete sizes.

Training only (JAX comes with the `train` extra); nothing here is imported at run time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from platestream.training.train import TrainingError, _jax

# BatchNormalization's running mean and variance: statistics, not weights, and kept frozen
_FROZEN_INPUTS = {"BatchNormalization": (3, 4)}


@dataclass
class Subgraph:
    """The nodes between `input_name` and `output_name`, with their float weights (of more than one
    element; scalars such as epsilons and exponents are constants) as trainable `params`."""

    model: Any  # onnx.ModelProto of the extracted part
    input_name: str
    output_name: str
    params: dict[str, np.ndarray[Any, Any]]
    constants: dict[str, np.ndarray[Any, Any]]

    def apply(self, params: dict[str, Any], x: Any) -> Any:
        """The output for input `x`, with `params` in place of the graph's weights."""
        values: dict[str, Any] = {**self.constants, **params, self.input_name: x}
        for node in self.model.graph.node:
            inputs = [values[name] if name else None for name in node.input]
            outputs = _run(node, inputs)
            for name, value in zip(node.output, outputs, strict=False):
                values[name] = value
        return values[self.output_name]


def extract(model: Any, input_name: str, output_name: str) -> Subgraph:
    """The part of `model` (onnx.ModelProto) from `input_name` to `output_name`."""
    import onnx
    import onnx.utils
    from onnx import numpy_helper

    part = onnx.utils.Extractor(model).extract_model([input_name], [output_name])
    if [i.name for i in part.graph.input] != [input_name]:
        raise TrainingError(f"{output_name} depends on more than {input_name}: not a part that can be tuned alone")
    unknown = sorted({node.op_type for node in part.graph.node} - _OPS.keys())
    if unknown:
        raise TrainingError(f"the part from {input_name} uses operators this trainer cannot run: {unknown}")
    refused = [f"{node.op_type} {node.name!r}: {why}" for node in part.graph.node if (why := _unsupported(node))]
    if refused:
        raise TrainingError(f"the part from {input_name} uses attributes this trainer cannot run: {refused}")
    frozen = {
        node.input[index]
        for node in part.graph.node
        for index in _FROZEN_INPUTS.get(node.op_type, ())
        if index < len(node.input)
    }
    params: dict[str, np.ndarray[Any, Any]] = {}
    constants: dict[str, np.ndarray[Any, Any]] = {}
    for tensor in part.graph.initializer:
        array = numpy_helper.to_array(tensor)
        if array.dtype == np.float32 and array.size > 1 and tensor.name not in frozen:
            params[tensor.name] = array
        else:
            constants[tensor.name] = array
    return Subgraph(part, input_name, output_name, params, constants)


def with_weights(part: Subgraph, params: dict[str, Any]) -> Any:
    """A copy of the extracted model with `params` as its initializers' values."""
    import onnx
    from onnx import numpy_helper

    model = onnx.ModelProto()
    model.CopyFrom(part.model)
    for tensor in model.graph.initializer:
        if tensor.name in params:
            tensor.CopyFrom(numpy_helper.from_array(np.asarray(params[tensor.name], np.float32), tensor.name))
    return model


# --- operators -----------------------------------------------------------------------------------


def _attributes(node: Any) -> dict[str, Any]:
    from onnx import helper

    return {attribute.name: helper.get_attribute_value(attribute) for attribute in node.attribute}


def _auto_pad(node: Any) -> str:
    value = _attributes(node).get("auto_pad", b"NOTSET")
    return value.decode() if isinstance(value, bytes) else str(value)


def _unsupported(node: Any) -> str | None:
    """Why the evaluator cannot run a node of a known operator, if it cannot."""
    a = _attributes(node)
    auto = _auto_pad(node)
    if auto not in ("NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER"):
        return f"auto_pad {auto}"
    if node.op_type in ("MaxPool", "AveragePool"):
        if a.get("ceil_mode", 0):
            return "ceil_mode (its output size rounded up)"
        if any(d != 1 for d in a.get("dilations", [])):
            return "a dilated pooling"
    return None


def _numeric(*values: Any) -> Any:
    """NumPy where every input is a NumPy array (shape arithmetic), jax.numpy otherwise."""
    _, jnp, _ = _jax()
    return np if all(isinstance(v, np.ndarray | np.generic) for v in values if v is not None) else jnp


def _padding(node: Any, sizes: tuple[int, ...], kernel: list[int], strides: list[int],
             dilations: list[int]) -> list[tuple[int, int]]:  # fmt: skip
    """A convolution's or pooling's padding per spatial axis, (before, after): its `pads`, or those
    its `auto_pad` implies (SAME_UPPER: as many outputs as ceil(size / stride), any odd pixel after)."""
    a = _attributes(node)
    auto = _auto_pad(node)
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        padding = []
        for size, k, s, d in zip(sizes, kernel, strides, dilations, strict=True):
            total = max(0, (-(-size // s) - 1) * s + (k - 1) * d + 1 - size)
            small, large = total // 2, total - total // 2
            padding.append((small, large) if auto == "SAME_UPPER" else (large, small))
        return padding
    if auto == "VALID":
        return [(0, 0)] * len(kernel)
    pads = a.get("pads", [0] * (2 * len(kernel)))
    half = len(pads) // 2
    return list(zip(pads[:half], pads[half:], strict=True))


def _conv(node: Any, x: Any, w: Any, b: Any = None) -> Any:
    jax, _, _ = _jax()
    a = _attributes(node)
    half = w.ndim - 2
    strides, dilations = a.get("strides", [1] * half), a.get("dilations", [1] * half)
    padding = _padding(node, tuple(x.shape[2:]), list(w.shape[2:]), strides, dilations)
    out = jax.lax.conv_general_dilated(
        x, w, window_strides=strides, padding=padding, rhs_dilation=dilations, feature_group_count=a.get("group", 1),
    )  # fmt: skip
    if b is not None:
        out = out + b.reshape(1, -1, *([1] * half))
    return out


def _pool(node: Any, x: Any) -> Any:
    """MaxPool, or AveragePool counting only the pixels inside the image unless count_include_pad."""
    jax, jnp, _ = _jax()
    a = _attributes(node)
    kernel = list(a["kernel_shape"])
    strides = a.get("strides", [1] * len(kernel))
    padding = [(0, 0), (0, 0), *_padding(node, tuple(x.shape[2:]), kernel, strides, [1] * len(kernel))]
    window, step = (1, 1, *kernel), (1, 1, *strides)
    if node.op_type == "MaxPool":
        return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, window, step, padding)
    total = jax.lax.reduce_window(x, 0.0, jax.lax.add, window, step, padding)
    if a.get("count_include_pad", 0):
        return total / float(np.prod(kernel))
    inside = jax.lax.reduce_window(jnp.ones(x.shape[2:], x.dtype)[None, None], 0.0, jax.lax.add, window, step, padding)
    return total / inside


def _hard_sigmoid(node: Any, x: Any) -> Any:
    _, jnp, _ = _jax()
    a = _attributes(node)
    return jnp.clip(a.get("alpha", 0.2) * x + a.get("beta", 0.5), 0.0, 1.0)


def _batch_norm(node: Any, x: Any, scale: Any, bias: Any, mean: Any, var: Any) -> Any:
    _, jnp, _ = _jax()
    shape = (1, -1, *([1] * (x.ndim - 2)))
    epsilon = _attributes(node).get("epsilon", 1e-5)
    return (x - mean.reshape(shape)) / jnp.sqrt(var.reshape(shape) + epsilon) * scale.reshape(shape) + bias.reshape(
        shape
    )


def _slice(node: Any, x: Any, starts: Any, ends: Any, axes: Any = None, steps: Any = None) -> Any:
    axes = list(range(len(starts))) if axes is None else [int(a) for a in axes]
    steps = [1] * len(starts) if steps is None else [int(s) for s in steps]
    index = [slice(None)] * x.ndim
    for start, end, axis, step in zip(starts, ends, axes, steps, strict=True):
        size = x.shape[axis]
        index[axis] = slice(*slice(int(max(-(2**62), min(start, 2**62))), int(max(-(2**62), min(end, 2**62))),
                                   step).indices(size))  # fmt: skip
    return x[tuple(index)]


def _reshape(node: Any, x: Any, shape: Any) -> Any:
    target = [int(s) for s in shape]
    target = [x.shape[i] if s == 0 else s for i, s in enumerate(target)]
    return x.reshape(target)


def _softmax(node: Any, x: Any) -> Any:
    jax, _, _ = _jax()
    return jax.nn.softmax(x, axis=_attributes(node).get("axis", -1))


def _reduce_mean(node: Any, x: Any, axes: Any = None) -> Any:
    a = _attributes(node)
    chosen = a.get("axes", None if axes is None else [int(v) for v in axes])
    return _numeric(x).mean(x, axis=tuple(chosen) if chosen is not None else None, keepdims=bool(a.get("keepdims", 1)))


def _squeeze(node: Any, x: Any, axes: Any = None) -> Any:
    chosen = _attributes(node).get("axes", None if axes is None else [int(v) for v in axes])
    return _numeric(x).squeeze(x, axis=tuple(chosen) if chosen is not None else None)


def _unsqueeze(node: Any, x: Any, axes: Any = None) -> Any:
    chosen: list[int] = _attributes(node).get("axes") or [int(v) for v in axes]
    out = x
    for axis in sorted(int(a) % (x.ndim + len(chosen)) for a in chosen):
        out = _numeric(out).expand_dims(out, axis)
    return out


def _binary(name: str) -> Callable[..., Any]:
    def run(node: Any, a: Any, b: Any) -> Any:
        return getattr(_numeric(a, b), name)(a, b)

    return run


def _unary(name: str) -> Callable[..., Any]:
    def run(node: Any, x: Any) -> Any:
        return getattr(_numeric(x), name)(x)

    return run


def _erf(node: Any, x: Any) -> Any:
    jax, _, _ = _jax()
    return jax.scipy.special.erf(x)


def _sigmoid(node: Any, x: Any) -> Any:
    jax, _, _ = _jax()
    return jax.nn.sigmoid(x)


_OPS: dict[str, Callable[..., Any]] = {
    "Identity": lambda node, x: x,
    "Add": _binary("add"),
    "Sub": _binary("subtract"),
    "Mul": _binary("multiply"),
    "Div": _binary("divide"),
    "Pow": _binary("power"),
    "MatMul": _binary("matmul"),
    "Sqrt": _unary("sqrt"),
    "Relu": lambda node, x: _numeric(x).maximum(x, 0),
    "Erf": _erf,
    "Sigmoid": _sigmoid,
    "Softmax": _softmax,
    "ReduceMean": _reduce_mean,
    "Conv": _conv,
    "MaxPool": _pool,
    "AveragePool": _pool,
    "HardSigmoid": _hard_sigmoid,
    "BatchNormalization": _batch_norm,
    "Shape": lambda node, x: np.array(x.shape, dtype=np.int64),
    "Slice": _slice,
    "Squeeze": _squeeze,
    "Unsqueeze": _unsqueeze,
    "Reshape": _reshape,
    "Transpose": lambda node, x: _numeric(x).transpose(x, _attributes(node).get("perm")),
    "Concat": lambda node, *xs: _numeric(*xs).concatenate(xs, axis=_attributes(node)["axis"]),
}


def _run(node: Any, inputs: list[Any]) -> list[Any]:
    while inputs and inputs[-1] is None:  # optional inputs left out at the end
        inputs.pop()
    return [_OPS[node.op_type](node, *inputs)]
