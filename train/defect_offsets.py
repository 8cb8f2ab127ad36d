"""Per-texture defect offsets: the student's operating point, chosen on a fresh calibration set
and folded into its last layer.

The paper flags a frame when any patch's argmax is a defective class. A narrow student trades
false alarms against misses differently on each texture, so one offset per texture is
subtracted from that texture's defective-class logits: a patch of texture t is then defective
when its defective logit beats every other class by more than ``offsets[t]``. The offsets are
folded into the bias of the final linear layer, so the exported network, the C++ engine and the
voter are the paper's and unchanged, only the weights differ.

Each offset is chosen to make the fewest image errors (12-class label, the §4 rule) on a
labelled set that no training step saw: a fresh synthetic set of the training generator with
its own seed, never the test split. ``vote_labels`` is the runtime voter
(``pyinspect.voting``) in numpy, vectorised over images so a grid of offsets costs seconds.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "OFFSET_GRID",
    "choose_offsets",
    "class_offsets",
    "fold_offsets",
    "image_errors",
    "vote_labels",
]

#: Candidate offsets (logit units): from flagging more (-2) to flagging far less (+8).
OFFSET_GRID = np.round(np.arange(-2.0, 8.0 + 1e-9, 0.1), 1)


def class_offsets(
    offsets: npt.ArrayLike, class_texture: npt.ArrayLike, class_defective: npt.ArrayLike
) -> npt.NDArray[np.float32]:
    """The per-class vector subtracted from the logits: ``offsets[t]`` on texture t's defective
    classes, 0 on every good class."""
    tex = np.asarray(class_texture, np.int64)
    dfc = np.asarray(class_defective, bool)
    off = np.asarray(offsets, np.float32)
    return np.where(dfc, off[tex], np.float32(0)).astype(np.float32)


def vote_labels(
    logits: npt.ArrayLike, class_texture: npt.ArrayLike, class_defective: npt.ArrayLike
) -> npt.NDArray[np.int64]:
    """Image labels (``2 * texture + defective``) of ``logits [N, P, C]`` by the runtime's rules:
    patch class = argmax (ties: the lower class id); texture = the majority of patch textures,
    a tie going to the larger summed softmax probability of the tied textures' classes over all
    patches, then to the lower texture id; defective iff any patch class is defective."""
    z = np.asarray(logits, np.float32)
    tex = np.asarray(class_texture, np.int64)
    dfc = np.asarray(class_defective, bool)
    n_tex = int(tex.max()) + 1
    pclass = z.argmax(-1)  # [N, P]
    ptex = tex[pclass]
    counts = np.zeros((z.shape[0], n_tex), np.int64)
    np.add.at(counts, (np.arange(z.shape[0])[:, None], ptex), 1)
    e = np.exp(z - z.max(-1, keepdims=True))
    prob = (e / e.sum(-1, keepdims=True)).sum(1)  # [N, C] summed over patches
    tex_prob = np.zeros((z.shape[0], n_tex), np.float64)
    for c in range(z.shape[-1]):
        tex_prob[:, tex[c]] += prob[:, c]
    tied = counts == counts.max(1, keepdims=True)
    texture = np.where(tied, tex_prob, -np.inf).argmax(1)
    defective = dfc[pclass].any(1)
    return 2 * texture + defective.astype(np.int64)


def image_errors(
    logits: npt.ArrayLike,
    labels: npt.ArrayLike,
    offsets: npt.ArrayLike,
    class_texture: npt.ArrayLike,
    class_defective: npt.ArrayLike,
) -> int:
    """Images whose label the voter gets wrong once ``offsets`` are subtracted."""
    z = np.asarray(logits, np.float32) - class_offsets(offsets, class_texture, class_defective)
    return int((vote_labels(z, class_texture, class_defective) != np.asarray(labels)).sum())


def choose_offsets(
    logits: npt.ArrayLike,
    labels: npt.ArrayLike,
    class_texture: npt.ArrayLike,
    class_defective: npt.ArrayLike,
    grid: npt.ArrayLike = OFFSET_GRID,
    passes: int = 2,
) -> tuple[npt.NDArray[np.float32], dict[str, Any]]:
    """Offsets (one per texture) with the fewest image errors on ``logits [N, P, C]`` with true
    ``labels [N]``, by coordinate descent over ``grid`` (each texture in turn, ``passes``
    times); of equally good values the one nearest 0 (the paper's rule) is kept. Returns the
    offsets and a record: errors before and after, per texture and in all."""
    z = np.asarray(logits, np.float32)
    y = np.asarray(labels, np.int64)
    tex = np.asarray(class_texture, np.int64)
    if z.ndim != 3 or z.shape[0] != y.shape[0] or z.shape[-1] != tex.shape[0]:
        msg = f"logits must be [N, P, {tex.shape[0]}] with N = len(labels), got {z.shape}"
        raise ValueError(msg)
    n_tex = int(tex.max()) + 1
    dfc = np.asarray(class_defective, bool)
    candidates = np.asarray(grid, np.float32)
    order = np.argsort(np.abs(candidates), kind="stable")  # nearest 0 first wins ties
    lo, hi = float(candidates.min()), float(candidates.max())
    offsets = np.zeros(n_tex, np.float32)
    for _ in range(passes):
        for t in range(n_tex):
            # only images with a patch whose class can change over the grid are re-voted:
            # texture t's defective logit within the grid's range of the best other class
            shifted = z - class_offsets(offsets, tex, dfc)
            own = (tex == t) & dfc
            gap = shifted[..., own].max(-1) + offsets[t] - shifted[..., ~own].max(-1)
            live = ((gap >= lo - 1e-3) & (gap <= hi + 1e-3)).any(1)
            fixed = image_errors(z[~live], y[~live], offsets, tex, dfc)
            errs = []
            for v in candidates[order]:
                trial = offsets.copy()
                trial[t] = v
                errs.append(fixed + image_errors(z[live], y[live], trial, tex, dfc))
            offsets[t] = candidates[order][int(np.argmin(errs))]

    def per_texture(off: npt.NDArray[np.float32]) -> list[int]:
        shifted = z - class_offsets(off, tex, class_defective)
        wrong = vote_labels(shifted, tex, class_defective) != y
        return [int(wrong[y // 2 == t].sum()) for t in range(n_tex)]

    zero = np.zeros(n_tex, np.float32)
    record = {
        "images": len(y),
        "errors_before": image_errors(z, y, zero, tex, class_defective),
        "errors_after": image_errors(z, y, offsets, tex, class_defective),
        "errors_before_per_texture": per_texture(zero),
        "errors_after_per_texture": per_texture(offsets),
    }
    return offsets, record


def fold_offsets(
    model: Any,
    offsets: npt.ArrayLike,
    class_texture: npt.ArrayLike,
    class_defective: npt.ArrayLike,
) -> None:
    """Subtract the offsets from the bias of ``model``'s last ``nn.Linear`` (in place)."""
    import torch

    last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    shift = class_offsets(offsets, class_texture, class_defective)
    if last.bias is None or last.bias.shape[0] != shift.shape[0]:
        msg = f"the last linear layer has no bias of {shift.shape[0]} classes to offset"
        raise ValueError(msg)
    with torch.no_grad():
        last.bias -= torch.as_tensor(shift, dtype=last.bias.dtype, device=last.bias.device)
