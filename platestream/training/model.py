"""The plate reader's network, in JAX: a small convolutional stem over the whole plate crop, one
transformer encoder layer over its 4x16 feature cells, and a fixed number of character slots that
each attend to the cells (one cross-attention layer) and classify into the alphabet or the pad
symbol. A second head regresses the box of the registration's characters in the crop (the box the
engine reports as the plate's coordinates). No CTC, no recurrence: two-line plates read top line
first like any other.

Parameters are plain nested dicts of arrays, so that `export.py` can write the same graph as ONNX.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
PAD = 0  # class 0 is "no character here"; class i + 1 is ALPHABET[i]
Params = dict[str, Any]


@dataclass(frozen=True)
class Architecture:
    height: int = 64
    width: int = 128
    slots: int = 10
    # (output channels, stride) of each 3x3 convolution of the stem
    stem: tuple[tuple[int, tuple[int, int]], ...] = (
        (32, (2, 2)), (48, (2, 2)), (64, (1, 1)), (96, (2, 2)), (96, (1, 1)), (128, (2, 1)),
    )  # fmt: skip
    heads: int = 4
    mlp: int = 256
    # the slot head: each cell's features narrowed to `narrow`, all cells flattened into a dense
    # layer that gives every slot its own view of the whole plate
    narrow: int = 48
    hidden: int = 512

    @property
    def classes(self) -> int:
        return len(ALPHABET) + 1

    @property
    def dim(self) -> int:
        return self.stem[-1][0]

    @property
    def cells(self) -> tuple[int, int]:
        height, width = self.height, self.width
        for _, (sy, sx) in self.stem:
            height, width = -(-height // sy), -(-width // sx)
        return height, width


def _dense(key: jax.Array, fan_in: int, fan_out: int) -> dict[str, jax.Array]:
    limit = float(np.sqrt(6.0 / (fan_in + fan_out)))
    return {"w": jax.random.uniform(key, (fan_in, fan_out), minval=-limit, maxval=limit),
            "b": jnp.zeros((fan_out,))}  # fmt: skip


def _norm(dim: int) -> dict[str, jax.Array]:
    return {"scale": jnp.ones((dim,)), "bias": jnp.zeros((dim,))}


def _attention(key: jax.Array, dim: int) -> dict[str, Any]:
    keys = jax.random.split(key, 4)
    return {name: _dense(k, dim, dim) for name, k in zip(("q", "k", "v", "o"), keys, strict=True)}


def init(key: jax.Array, arch: Architecture) -> tuple[Params, Params]:
    """Fresh parameters and batch-norm statistics."""
    keys = iter(jax.random.split(key, 32))
    stem, stats = [], []
    channels = 3
    for out, _ in arch.stem:
        fan_in = 9 * channels
        weight = jax.random.normal(next(keys), (3, 3, channels, out)) * np.sqrt(2.0 / fan_in)
        stem.append({"w": weight, "bn": _norm(out)})
        stats.append({"mean": jnp.zeros((out,)), "var": jnp.ones((out,))})
        channels = out
    dim, cells = arch.dim, arch.cells[0] * arch.cells[1]
    params: Params = {
        "stem": stem,
        "position": jax.random.normal(next(keys), (cells, dim)) * 0.02,
        "encoder": {"norm1": _norm(dim), "attention": _attention(next(keys), dim), "norm2": _norm(dim),
                    "mlp1": _dense(next(keys), dim, arch.mlp), "mlp2": _dense(next(keys), arch.mlp, dim)},
        "box": {"norm": _norm(dim), "dense": _dense(next(keys), dim, 4)},
    }  # fmt: skip
    params["flat"] = {"norm": _norm(dim), "narrow": _dense(next(keys), dim, arch.narrow),
                      "hidden": _dense(next(keys), cells * arch.narrow, arch.hidden),
                      "out": _dense(next(keys), arch.hidden, arch.slots * arch.classes)}  # fmt: skip
    return params, {"stem": stats}


def _layer_norm(x: jax.Array, p: dict[str, jax.Array], eps: float = 1e-5) -> jax.Array:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / jnp.sqrt(var + eps) * p["scale"] + p["bias"]


def _linear(x: jax.Array, p: dict[str, jax.Array]) -> jax.Array:
    return x @ p["w"] + p["b"]


def _multi_head(queries: jax.Array, keys: jax.Array, p: dict[str, Any], heads: int) -> jax.Array:
    batch, n_q, dim = queries.shape
    n_k = keys.shape[1]
    head = dim // heads
    q = _linear(queries, p["q"]).reshape(batch, n_q, heads, head).transpose(0, 2, 1, 3)
    k = _linear(keys, p["k"]).reshape(batch, n_k, heads, head).transpose(0, 2, 3, 1)
    v = _linear(keys, p["v"]).reshape(batch, n_k, heads, head).transpose(0, 2, 1, 3)
    weights = jax.nn.softmax((q @ k) / np.sqrt(head), axis=-1)
    mixed = (weights @ v).transpose(0, 2, 1, 3).reshape(batch, n_q, dim)
    return _linear(mixed, p["o"])


BN_EPS = 1e-3
BN_MOMENTUM = 0.95


def apply(
    params: Params, stats: Params, images: jax.Array, arch: Architecture, *, train: bool,
    dropout_key: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array, Params]:  # fmt: skip
    """Class logits (batch, slots, classes), the registration's box (batch, 4; sigmoid, x1 y1 x2
    y2 relative to the crop) and the updated batch-norm statistics. `images` are (batch, height,
    width, 3) floats scaled to -1..1, RGB."""
    x = images
    new_stats = []
    for layer, stat, (_, stride) in zip(params["stem"], stats["stem"], arch.stem, strict=True):
        x = jax.lax.conv_general_dilated(x, layer["w"], stride, "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
        if train:
            mean, var = x.mean((0, 1, 2)), x.var((0, 1, 2))
            new_stats.append({"mean": BN_MOMENTUM * stat["mean"] + (1 - BN_MOMENTUM) * mean,
                              "var": BN_MOMENTUM * stat["var"] + (1 - BN_MOMENTUM) * var})  # fmt: skip
        else:
            mean, var = stat["mean"], stat["var"]
            new_stats.append(stat)
        x = (x - mean) / jnp.sqrt(var + BN_EPS) * layer["bn"]["scale"] + layer["bn"]["bias"]
        x = jax.nn.relu(x)
    batch = x.shape[0]
    tokens = x.reshape(batch, -1, arch.dim) + params["position"]
    enc = params["encoder"]
    normed = _layer_norm(tokens, enc["norm1"])
    tokens = tokens + _multi_head(normed, normed, enc["attention"], arch.heads)
    tokens = tokens + _linear(jax.nn.relu(_linear(_layer_norm(tokens, enc["norm2"]), enc["mlp1"])), enc["mlp2"])
    flat = params["flat"]
    narrow = _linear(_layer_norm(tokens, flat["norm"]), flat["narrow"]).reshape(batch, -1)
    hidden = jax.nn.relu(_linear(narrow, flat["hidden"]))
    if train and dropout_key is not None:
        keep = jax.random.bernoulli(dropout_key, 0.9, hidden.shape)
        hidden = jnp.where(keep, hidden / 0.9, 0.0)
    logits = _linear(hidden, flat["out"]).reshape(batch, arch.slots, arch.classes)
    pooled = _layer_norm(tokens.mean(1), params["box"]["norm"])
    box = jax.nn.sigmoid(_linear(pooled, params["box"]["dense"]))
    return logits, box, {"stem": new_stats}


def encode_labels(texts: list[str], slots: int) -> np.ndarray:
    """Texts as class indices, left-aligned, padded with PAD."""
    index = {char: i + 1 for i, char in enumerate(ALPHABET)}
    labels = np.zeros((len(texts), slots), np.int32)
    for row, text in enumerate(texts):
        for column, char in enumerate(text[:slots]):
            labels[row, column] = index[char]
    return labels


def decode(classes: np.ndarray) -> list[str]:
    """Class indices (batch, slots) as texts: characters in slot order, pads dropped."""
    return ["".join(ALPHABET[c - 1] for c in row if c != PAD) for row in classes]
