"""Students of the paper's family (Table 1 structure, any widths and class count) with random
weights, written as ONNX + sidecar the way ``train/export.py`` writes them, built in-process.

Used by the direct student runner's tests and by ``benchmarks/student_family.py``. Import as
``from studentzoo import ...`` from tests (pytest puts ``tests/`` on sys.path); other tools add
``tests/`` to ``sys.path`` first.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from pyinspect.spec import GridSpec, ModelSpec


def cpu_flags() -> set[str]:
    """The kernel's CPU flags (``/proc/cpuinfo``), what the runner's dispatch must agree with;
    empty where the file is absent."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


#: The paper's student (Table 1), the shipped model's widths.
WIDTHS = (4, 8, 16, 4, 4)


def student_onnx(
    path: Path,
    *,
    folded: bool = True,
    seed: int = 0,
    hidden: int = 256,
    mean: float = 0.5,
    std: float = 0.5,
    widths: Sequence[int] = WIDTHS,
    classes: int = 12,
    grid: GridSpec | None = None,
) -> ModelSpec:
    """A student with random weights, as the exporter writes it: ``folded`` = raw gray input
    with an explicit Pad(255·mean) before a pad-0 conv1; else 3-channel normalised input with a
    zero-padded conv1. ``hidden`` is FC1's width (4096 in the paper; small keeps tests fast);
    ``classes`` the output count (DAGM class names, two per texture, the last texture without its
    defective class when the count is odd); ``grid`` the sidecar's patch grid (default: cover)."""
    rng = np.random.default_rng(seed)
    inits, nodes = [], []
    cin = 1 if folded else 3
    src = "input"
    if folded:
        inits += [
            numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "pads"),
            numpy_helper.from_array(np.array(255.0 * mean, np.float32), "pad_value"),
        ]
        nodes.append(helper.make_node("Pad", ["input", "pads", "pad_value"], ["padded"]))
        src = "padded"
    for i, width in enumerate(widths, start=1):
        w = rng.normal(0, np.sqrt(2.0 / (9 * cin)), (width, cin, 3, 3)).astype(np.float32)
        if i == 1 and folded:
            w /= 255.0 * std  # raw pixels in, as the folded export
        b = rng.normal(0, 0.1, width).astype(np.float32)
        if i == 1 and folded:
            b -= (w.sum(axis=(1, 2, 3)) * 255.0 * mean).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(b, f"b{i}")]
        pad = 0 if (i == 1 and folded) else 1
        nodes += [
            helper.make_node("Conv", [src, f"w{i}", f"b{i}"], [f"c{i}"], pads=[pad] * 4),
            helper.make_node("Relu", [f"c{i}"], [f"r{i}"]),
            helper.make_node("MaxPool", [f"r{i}"], [f"p{i}"], kernel_shape=[2, 2], strides=[2, 2]),
        ]
        src, cin = f"p{i}", width
    flat = widths[-1] * 49
    fc1 = rng.normal(0, np.sqrt(2.0 / flat), (hidden, flat)).astype(np.float32)
    fc2 = rng.normal(0, np.sqrt(1.0 / hidden), (classes, hidden)).astype(np.float32)
    inits += [
        numpy_helper.from_array(fc1, "fc1"),
        numpy_helper.from_array(rng.normal(0, 0.1, hidden).astype(np.float32), "fb1"),
        numpy_helper.from_array(fc2, "fc2"),
        numpy_helper.from_array(rng.normal(0, 0.1, classes).astype(np.float32), "fb2"),
    ]
    nodes += [
        helper.make_node("Flatten", [src], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "fc1", "fb1"], ["h"], transB=1),
        helper.make_node("Relu", ["h"], ["hr"]),
        helper.make_node("Gemm", ["hr", "fc2", "fb2"], ["logits"], transB=1),
    ]
    channels = 1 if folded else 3
    graph = helper.make_graph(
        nodes,
        "student",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", channels, 224, 224])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    onnx.save(model, path)
    norm = (
        {"mean": [0.0], "std": [1.0 / 255.0]} if folded else {"mean": [mean] * 3, "std": [std] * 3}
    )
    spec = ModelSpec.for_dagm(channels=channels, n_textures=(classes + 1) // 2, grid=grid, **norm)
    if classes % 2:
        doc = spec.to_dict()
        doc["classes"] = doc["classes"][:classes]
        spec = ModelSpec.from_dict(doc, source="studentzoo")
    spec.save_for_model(path)
    return spec


def frames(shape: tuple[int, int], n: int = 3, seed: int | None = None) -> list[np.ndarray]:
    """Textured gray frames (sine pattern + noise), reproducible per shape (or ``seed``)."""
    rng = np.random.default_rng(shape[0] * 1000 + shape[1] if seed is None else seed)
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    out = []
    for _ in range(n):
        base = 128 + 50 * np.sin(xx / rng.uniform(3, 20)) * np.cos(yy / rng.uniform(3, 20))
        out.append(np.clip(base + rng.normal(0, 20, shape), 0, 255).astype(np.uint8))
    return out
