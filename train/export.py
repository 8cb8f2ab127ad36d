"""ONNX export + the sidecar the runtime reads (``<model>.onnx.json``) + a parity check.

Two variants:

* ``rgb``: the paper's network as trained: input ``[N, 3, 224, 224]`` float32 normalised with the
  arch's mean/std (the tiler replicates gray to RGB and normalises);
* ``folded``: input ``[N, 1, 224, 224]`` raw gray pixels 0..255 (sidecar mean [0], std [1/255], so
  the tiler only converts). Gray→RGB replication and (x/255 − mean)/std are folded into conv1.
  Folding into conv1's bias alone is not exact at the borders, because conv1 zero-pads in
  normalised space; :class:`FoldedConv` pads the raw input with the pixel value that normalises to
  zero (255·mean) instead, or adds a per-position bias map when the mean differs per channel.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from pyinspect.spec import SCHEMA_VERSION, ModelSpec
from train.cli import command_parser, friendly_errors
from train.models import NUM_CLASSES, PATCH, ModelError, load_checkpoint, normalization

__all__ = [
    "OPSET",
    "SCHEMA_VERSION",
    "FoldedConv",
    "export",
    "fold",
    "onnx_export",
    "sidecar",
    "sidecar_dict",
]

OPSET = 18  # the dynamo exporter's native opset (>= 17 as required)


class FoldedConv(nn.Module):
    """conv1 of a network trained on normalised RGB, rewritten to take raw gray pixels exactly."""

    def __init__(
        self, conv: nn.Conv2d, mean: Sequence[float], std: Sequence[float], size: int = PATCH
    ) -> None:
        super().__init__()
        if not isinstance(conv, nn.Conv2d) or conv.in_channels != 3 or conv.groups != 1:
            msg = f"can only fold a 3-input-channel nn.Conv2d, got {conv!r}"
            raise ModelError(msg)
        pad = conv.padding
        if isinstance(pad, str) or pad[0] != pad[1] or conv.padding_mode != "zeros":
            msg = f"can only fold symmetric zero padding, got padding={pad!r}"
            raise ModelError(msg)
        w = conv.weight.detach().double()  # [O, 3, k, k]
        m = torch.tensor(mean, dtype=torch.float64).view(1, 3, 1, 1)
        s = torch.tensor(std, dtype=torch.float64).view(1, 3, 1, 1)
        b = conv.bias.detach().double() if conv.bias is not None else torch.zeros(w.shape[0])
        self.stride, self.dilation, self.pad = conv.stride, conv.dilation, int(pad[0])
        weight = (w / (255.0 * s)).sum(1, keepdim=True)  # gray replicated into every channel
        shift = w * (m / s)  # what each tap subtracts for an in-bounds pixel
        uniform = bool(torch.allclose(m, m.flatten()[0].expand_as(m)))
        if uniform:
            # Pad with the raw value that normalises to 0 in every channel: then every tap is
            # "in-bounds" and the shift is one constant per output channel.
            self.pad_value = float(255.0 * m.flatten()[0])
            bias = b - shift.sum((1, 2, 3))
            self.register_buffer("bias_map", torch.zeros(0), persistent=False)
        else:
            # Pad with raw 0; subtract only the shift of in-bounds taps: a per-position bias map.
            self.pad_value = 0.0
            ones = torch.ones(1, 1, size, size, dtype=torch.float64)
            inside = F.conv2d(
                ones, shift.sum(1, keepdim=True), None, conv.stride, self.pad, conv.dilation
            )
            bias = b.clone()
            self.register_buffer("bias_map", (-inside[0]).float())
            self.size = size
        self.weight = nn.Parameter(weight.float(), requires_grad=False)
        self.bias = nn.Parameter(bias.float(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad:
            x = F.pad(x, (self.pad,) * 4, value=self.pad_value)
        y = F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation)
        return y + self.bias_map if self.bias_map.numel() else y


def fold(model: nn.Module, arch: str) -> nn.Module:
    """A copy of ``model`` whose input is raw gray pixels [N, 1, 224, 224] (0..255)."""
    if arch not in ("student", "vgg16"):
        msg = f"folding supports the student and vgg16 (plain conv1), not {arch!r}"
        raise ModelError(msg)
    folded = copy.deepcopy(model).eval()
    mean, std = normalization(arch)
    folded.features[0] = FoldedConv(model.features[0], mean, std)  # type: ignore[index]
    return folded


def onnx_export(model: nn.Module, example: torch.Tensor, path: Path, opset: int = OPSET) -> None:
    """Export ``model`` with a dynamic batch axis (input ``input``, output ``logits``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    batch = torch.export.Dim("batch", min=1, max=4096)
    torch.onnx.export(
        model,
        (example,),
        str(path),
        input_names=["input"],
        output_names=["logits"],
        opset_version=opset,
        dynamo=True,
        external_data=False,
        dynamic_shapes=({0: batch},),
        optimize=True,
        verbose=False,
    )


def sidecar(
    *, channels: int, mean: Sequence[float], std: Sequence[float], provenance: dict[str, Any]
) -> ModelSpec:
    """The sidecar of an exported DAGM network, built (and validated) by ``ModelSpec``."""
    return ModelSpec.for_dagm(
        n_textures=NUM_CLASSES // 2,
        patch=PATCH,
        channels=channels,
        mean=mean,
        std=std,
        provenance=provenance,
    )


def sidecar_dict(
    *, channels: int, mean: Sequence[float], std: Sequence[float], provenance: dict[str, Any]
) -> dict[str, Any]:
    """:func:`sidecar` as a JSON-ready document."""
    return sidecar(channels=channels, mean=mean, std=std, provenance=provenance).to_dict()


def parity_check(
    onnx_path: Path, model: nn.Module, arch: str, folded: bool, n: int = 16, seed: int = 0
) -> float:
    """max |Δlogit| between ONNX Runtime and PyTorch (unfolded, normalised RGB) on random and
    constant patches (constant ones exercise the padded borders)."""
    import onnxruntime as ort

    from train.models import to_input

    rng = np.random.default_rng(seed)
    patches = rng.integers(0, 256, size=(n, PATCH, PATCH), dtype=np.uint8)
    patches[0], patches[1] = 0, 255
    mean, std = normalization(arch)
    with torch.inference_mode():
        ref = model.eval()(to_input(patches, mean, std)).numpy()
    feed = patches[:, None].astype(np.float32) if folded else to_input(patches, mean, std).numpy()
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = sess.run(["logits"], {"input": feed})[0]
    return float(np.max(np.abs(got - ref)))


def export(
    checkpoint: str | Path,
    out: str | Path,
    *,
    folded: bool = False,
    opset: int = OPSET,
    provenance: dict[str, Any] | None = None,
    tolerance: float = 1e-4,
    spec_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Export a checkpoint to ONNX + sidecar; raise if ONNX Runtime disagrees by > tolerance.

    ``provenance`` (accuracy, dataset, preset, ...) is written into the sidecar over what the
    checkpoint's own meta says, so a caller that measured the model need not re-save it.
    ``spec_options``: an own-data class table and run-time policies (``classes``, ``textures``,
    ``resize``, ``bit_depth``: ``ModelSpec.for_classes``); absent, the DAGM table."""
    if opset < 17:
        msg = f"opset must be >= 17, got {opset}"
        raise ModelError(msg)
    out = Path(out)
    model, ckpt = load_checkpoint(checkpoint)
    arch = ckpt["arch"]
    mean, std = normalization(arch)
    if folded:
        net = fold(model, arch)
        example = torch.zeros(2, 1, PATCH, PATCH)
        side_mean, side_std, channels = [0.0], [1.0 / 255.0], 1
    else:
        net = model
        example = torch.zeros(2, 3, PATCH, PATCH)
        side_mean, side_std, channels = list(mean), list(std), 3
    onnx_export(net.eval(), example, out, opset)
    delta = parity_check(out, model, arch, folded)
    if not delta < tolerance:
        msg = f"{out}: ONNX Runtime differs from PyTorch by {delta:.3g} (> {tolerance})"
        raise ModelError(msg)
    digest = hashlib.sha256(Path(checkpoint).read_bytes()).hexdigest()
    meta = ckpt.get("meta", {})
    prov = {
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "preset": meta.get("preset"),
        "model": arch,
        "arch_kwargs": ckpt["arch_kwargs"],
        "teacher": meta.get("teacher"),
        "seed": meta.get("seed"),
        "accuracy": meta.get("accuracy"),
        "dataset": meta.get("dataset"),
        "notes": (
            "folded: raw gray input, gray->RGB and mean/std folded into conv1"
            if folded
            else "paper network: normalised RGB input"
        ),
        "source_sha256": digest,
        "model_sha256": hashlib.sha256(out.read_bytes()).hexdigest(),
        "parameters": sum(p.numel() for p in model.parameters()),
        "parity_max_abs_logit_diff": delta,
        "opset": opset,
        **(provenance or {}),
    }
    if spec_options:
        opts = dict(spec_options)
        spec = ModelSpec.for_classes(
            opts.pop("classes"),
            opts.pop("textures"),
            patch=PATCH,
            channels=channels,
            mean=side_mean,
            std=side_std,
            provenance=prov,
            **opts,
        )
    else:
        spec = sidecar(channels=channels, mean=side_mean, std=side_std, provenance=prov)
    side = spec.save_for_model(out, overwrite=True)
    return {
        "onnx": str(out),
        "sidecar": str(side),
        "max_abs_logit_diff": delta,
        "bytes": out.stat().st_size,
    }


@friendly_errors
def main(argv: list[str] | None = None) -> int:
    ap = command_parser("export", __doc__)
    ap.add_argument("checkpoint")
    ap.add_argument("--out", required=True, help="output .onnx (sidecar: <out>.json)")
    ap.add_argument("--folded", action="store_true", help="1-channel raw-pixel input variant")
    ap.add_argument("--opset", type=int, default=OPSET)
    ap.add_argument("--accuracy", type=float, help="measured accuracy to record in provenance")
    args = ap.parse_args(argv)
    prov = {"accuracy": args.accuracy} if args.accuracy is not None else None
    try:
        info = export(
            args.checkpoint, args.out, folded=args.folded, opset=args.opset, provenance=prov
        )
    except ModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(info))
    return 0
