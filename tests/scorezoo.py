"""A model whose defect score is chosen by the test, and generic-layout sets built for it.

The ONNX graph reads a 224×224 gray patch: the mean of its top half (x = v / 255) is the defect
probability, the mean of its bottom half (0 or 255) picks the texture. Output (probabilities):
``[(1-x)(1-y), x(1-y), (1-x)y, xy]`` for the class table a good, a defective, b good,
b defective, so an image whose top half is ``v`` scores ``v / 255`` and is defective under the
argmax rule iff ``v > 127``. Used by tests/test_evaluate_cli.py and tests/test_calibrate.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnx
from onnx import TensorProto, helper

from pyinspect.spec import ModelSpec

PATCH = 224
TEXTURES = ("alpha", "beta")


def score_model() -> onnx.ModelProto:
    c = helper.make_tensor
    inits = [
        c("h0", TensorProto.INT64, [1], [0]),
        c("h1", TensorProto.INT64, [1], [PATCH // 2]),
        c("h2", TensorProto.INT64, [1], [PATCH]),
        c("ax", TensorProto.INT64, [1], [2]),
        c("lo", TensorProto.FLOAT, [], [0.0]),
        c("hi", TensorProto.FLOAT, [], [1.0]),
        c("one", TensorProto.FLOAT, [], [1.0]),
    ]
    n = helper.make_node
    nodes = [
        n("Slice", ["input", "h0", "h1", "ax"], ["top"]),
        n("Slice", ["input", "h1", "h2", "ax"], ["bot"]),
        n("ReduceMean", ["top"], ["tm"], axes=[1, 2, 3], keepdims=1),
        n("ReduceMean", ["bot"], ["bm"], axes=[1, 2, 3], keepdims=1),
        n("Flatten", ["tm"], ["tf"], axis=1),
        n("Flatten", ["bm"], ["bf"], axis=1),
        n("Clip", ["tf", "lo", "hi"], ["x"]),
        n("Clip", ["bf", "lo", "hi"], ["y"]),
        n("Sub", ["one", "x"], ["nx"]),
        n("Sub", ["one", "y"], ["ny"]),
        n("Mul", ["nx", "ny"], ["p0"]),
        n("Mul", ["x", "ny"], ["p1"]),
        n("Mul", ["nx", "y"], ["p2"]),
        n("Mul", ["x", "y"], ["p3"]),
        n("Concat", ["p0", "p1", "p2", "p3"], ["probs"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "score",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, PATCH, PATCH])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 4])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model


def write_score_model(
    folder: Path, name: str = "score.onnx", *, defect_types: tuple[str, str] | None = None
) -> Path:
    """The model and its sidecar; ``defect_types``: the type each texture's defective class
    names (a ``keep`` model), else merged ("defective")."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    onnx.save(score_model(), path)
    classes: list[dict[str, Any]] = []
    for t, tex in enumerate(TEXTURES):
        dtype = defect_types[t] if defect_types else "defective"
        classes.append({"name": f"{tex} good", "texture": t, "defective": False})
        classes.append(
            {"name": f"{tex} {dtype}", "texture": t, "defective": True, "defect_type": dtype}
        )
    spec = ModelSpec.for_classes(
        classes,
        list(TEXTURES),
        patch=PATCH,
        channels=1,
        mean=[0.0],
        std=[1.0],
        output_name="probs",
        output_kind="probabilities",
        provenance={"model": "score", "notes": "tests/scorezoo.py"},
    )
    spec.save_for_model(path)
    return path


def score_frame(value: int, texture: int) -> np.ndarray:
    """A frame that scores ``value / 255`` on texture ``texture`` (0 or 1)."""
    img = np.zeros((PATCH, PATCH), np.uint8)
    img[: PATCH // 2] = value
    img[PATCH // 2 :] = 255 * texture
    return img


def write_set(root: Path, layout: dict[str, dict[str, list[int]]]) -> Path:
    """``layout[group][folder] = [top values]``: ``ROOT/group/folder/NN.png``; the texture is
    the group's index in ``TEXTURES`` (0 for a group the model does not know)."""
    for group, folders in layout.items():
        texture = TEXTURES.index(group) if group in TEXTURES else 0
        for folder, values in folders.items():
            d = root / group / folder
            d.mkdir(parents=True, exist_ok=True)
            for i, v in enumerate(values):
                assert cv2.imwrite(str(d / f"{i:02d}.png"), score_frame(v, texture))
    return root
