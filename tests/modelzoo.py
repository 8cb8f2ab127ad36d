"""Tiny ONNX models (+ sidecars) built in-process, with a NumPy reference of the same network.

Conv3x3(stride 4) → ReLU → GlobalAveragePool → Flatten → Gemm to K logits, dynamic batch. Small
enough to run a 512×512 frame in milliseconds on two cores, real enough to exercise every
dtype/channel/name path of a backend. Import as ``from modelzoo import ...`` from tests (pytest
puts ``tests/`` on sys.path); other tools add ``tests/`` to ``sys.path`` first.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from pyinspect.spec import ModelSpec

OPSET = 17
IR_VERSION = 9  # read by every onnxruntime >= 1.16
FEATURES = 8
STRIDE = 4


@dataclass(frozen=True)
class TinyWeights:
    conv_w: np.ndarray  # [F, C, 3, 3]
    conv_b: np.ndarray  # [F]
    fc_w: np.ndarray  # [K, F]
    fc_b: np.ndarray  # [K]


def tiny_weights(channels: int = 3, classes: int = 12, seed: int = 0) -> TinyWeights:
    """Random weights scaled so the logits spread over several classes on textured input."""
    rng = np.random.default_rng(seed)
    return TinyWeights(
        conv_w=rng.normal(0, 0.5, (FEATURES, channels, 3, 3)).astype(np.float32),
        conv_b=rng.normal(0, 0.1, FEATURES).astype(np.float32),
        fc_w=rng.normal(0, 2.0, (classes, FEATURES)).astype(np.float32),
        fc_b=rng.normal(0, 0.1, classes).astype(np.float32),
    )


def tiny_model(
    weights: TinyWeights,
    *,
    patch: int = 224,
    dtype: Literal["float32", "float16"] = "float32",
    batch: int | None = None,
    input_name: str = "input",
    output_name: str = "logits",
    softmax: bool = False,
) -> onnx.ModelProto:
    """The graph; ``batch=None`` makes axis 0 dynamic. float16 models cast in and out so the
    arithmetic (and the reference) stays float32."""
    channels = weights.conv_w.shape[1]
    classes = weights.fc_w.shape[0]
    elem = TensorProto.FLOAT16 if dtype == "float16" else TensorProto.FLOAT
    batch_dim: int | str = "batch" if batch is None else batch
    x = helper.make_tensor_value_info(input_name, elem, [batch_dim, channels, patch, patch])
    y = helper.make_tensor_value_info(output_name, elem, [batch_dim, classes])
    inits = [
        numpy_helper.from_array(weights.conv_w, "conv_w"),
        numpy_helper.from_array(weights.conv_b, "conv_b"),
        numpy_helper.from_array(weights.fc_w, "fc_w"),
        numpy_helper.from_array(weights.fc_b, "fc_b"),
    ]
    nodes = []
    src = input_name
    if dtype == "float16":
        nodes.append(helper.make_node("Cast", [input_name], ["x32"], to=TensorProto.FLOAT))
        src = "x32"
    nodes += [
        helper.make_node("Conv", [src, "conv_w", "conv_b"], ["c"], strides=[STRIDE, STRIDE]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"], axis=1),
        helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["z"], transB=1),
    ]
    last = "z"
    if softmax:
        nodes.append(helper.make_node("Softmax", ["z"], ["p"], axis=1))
        last = "p"
    if dtype == "float16":
        nodes.append(helper.make_node("Cast", [last], [output_name], to=TensorProto.FLOAT16))
    else:
        nodes.append(helper.make_node("Identity", [last], [output_name]))
    graph = helper.make_graph(nodes, "tiny", [x], [y], inits)
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="pyinspect-tests"
    )
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model


def reference_logits(x: np.ndarray, weights: TinyWeights, *, softmax: bool = False) -> np.ndarray:
    """The same network in NumPy (float64 accumulate): x [N, C, P, P] -> [N, K] float32."""
    x = np.asarray(x, dtype=np.float64)
    win = np.lib.stride_tricks.sliding_window_view(x, (3, 3), axis=(2, 3))
    win = win[:, :, ::STRIDE, ::STRIDE]  # [N, C, H', W', 3, 3]
    conv = np.tensordot(win, weights.conv_w.astype(np.float64), axes=([1, 4, 5], [1, 2, 3]))
    conv += weights.conv_b  # [N, H', W', F]
    feat = np.maximum(conv, 0).mean(axis=(1, 2))
    z = feat @ weights.fc_w.T.astype(np.float64) + weights.fc_b
    if softmax:
        z = np.exp(z - z.max(axis=1, keepdims=True))
        z /= z.sum(axis=1, keepdims=True)
    return z.astype(np.float32)


def reference_tiles(
    frame: np.ndarray, boxes: np.ndarray, mean: list[float], std: list[float], channels: int
) -> np.ndarray:
    """Independent NumPy tiler (BGR/gray uint8 frame -> [N, C, P, P] float32 normalised), the
    contract of ``pyinspect.tiling.tile_into``, for end-to-end references."""
    img = frame.astype(np.float32) / 255.0
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim == 2:
        planes = [img] * channels
    else:
        b, g, r = img[:, :, 0], img[:, :, 1], img[:, :, 2]
        planes = [r, g, b] if channels == 3 else [0.299 * r + 0.587 * g + 0.114 * b]
    out = []
    for x, y, w, h in boxes:
        out.append([(p[y : y + h, x : x + w] - mean[c]) / std[c] for c, p in enumerate(planes)])
    return np.asarray(out, dtype=np.float32)


@dataclass(frozen=True)
class TinyBundle:
    model_path: Path
    spec: ModelSpec
    weights: TinyWeights


def write_tiny(
    folder: Path,
    name: str = "tiny.onnx",
    *,
    channels: Literal[1, 3] = 3,
    patch: int = 224,
    dtype: Literal["float32", "float16"] = "float32",
    batch: int | None = None,
    softmax: bool = False,
    seed: int = 0,
    sidecar: bool = True,
    **spec_overrides: Any,
) -> TinyBundle:
    """Write ``folder/name`` and (unless ``sidecar=False``) its matching ``name.json``;
    ``spec_overrides`` go to ``ModelSpec.for_dagm`` (e.g. ``mean=``, ``input_name=``)."""
    weights = tiny_weights(channels=channels, seed=seed)
    model = tiny_model(weights, patch=patch, dtype=dtype, batch=batch, softmax=softmax)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    onnx.save(model, path)
    spec_args: dict[str, Any] = {
        "patch": patch,
        "channels": channels,
        "dtype": dtype,
        "batch": -1 if batch is None else batch,
        "output_kind": "probabilities" if softmax else "logits",
        "mean": [0.5] * channels,
        "std": [0.25] * channels,
        "provenance": {"model": "tiny", "seed": seed, "notes": "tests/modelzoo.py"},
    }
    spec_args.update(spec_overrides)
    spec = ModelSpec.for_dagm(**spec_args)
    if sidecar:
        spec.save_for_model(path)
    return TinyBundle(path, spec, weights)


def textured_frame(height: int = 512, width: int = 512, *, channels: int = 0, seed: int = 0):
    """A uint8 frame with structure at several scales (so patches differ), H×W or H×W×C."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = 128 + 60 * np.sin(xx / (7 + 5 * rng.random())) * np.cos(yy / (11 + 9 * rng.random()))
    base += 40 * (xx / width) * rng.choice([-1, 1]) + rng.normal(0, 12, (height, width))
    if channels:
        base = np.stack([base * (0.6 + 0.4 * rng.random()) for _ in range(channels)], axis=2)
    return np.clip(base, 0, 255).astype(np.uint8)


def reference_vote(
    scores: np.ndarray,
    class_texture: np.ndarray,
    class_defective: np.ndarray,
    *,
    is_logits: bool = True,
    threshold: float | None = None,
) -> dict[str, Any]:
    """The paper's §4 decision in NumPy (same tie rules as ``pyinspect.voting``)."""
    s = np.asarray(scores, dtype=np.float64)
    if is_logits:
        e = np.exp(s - s.max(axis=1, keepdims=True))
        prob = e / e.sum(axis=1, keepdims=True)
    else:
        prob = s
    patch_class = s.argmax(axis=1)
    defect_prob = prob[:, class_defective].sum(axis=1)
    if threshold is None:
        patch_defective = class_defective[patch_class]
    else:
        patch_defective = defect_prob.astype(np.float32) >= np.float32(threshold)  # as the core
    n_tex = int(class_texture.max()) + 1
    votes = np.bincount(class_texture[patch_class], minlength=n_tex)
    mass = np.array([prob[:, class_texture == t].sum() for t in range(n_tex)])
    tied = np.flatnonzero(votes == votes.max())
    texture = int(tied[np.argmax(mass[tied])])  # argmax takes the lower id on equal mass
    return {
        "patch_class": patch_class,
        "patch_score": prob[np.arange(len(s)), patch_class],
        "patch_defect_prob": defect_prob,
        "patch_defective": patch_defective,
        "texture": texture,
        "defective": bool(patch_defective.any()),
        "texture_votes": votes,
        "texture_mass": mass,
    }
