"""Glue between the numpy samplers (train/patches.py) and the training loops.

A patch set is materialised once into two arrays (uint8 ``[N, 224, 224]`` patches, int64 labels)
and cached as ``.npy`` files so both teachers and every student see exactly the same patches.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np


def _pairs(items: Iterable[Any]) -> Iterator[tuple[np.ndarray, int]]:
    """Accept a sampler yielding ``(patch, label)`` pairs or ``(patches, labels)`` batches."""
    for item in items:
        patch, label = item[0], item[1]
        patch = np.asarray(patch)
        if patch.ndim == 3:  # a batch
            for p, lab in zip(patch, np.asarray(label).reshape(-1), strict=True):
                yield p, int(lab)
        else:
            yield patch, int(label)


def materialize(
    sampler: Iterable[Any], max_patches: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Sampler -> (uint8 patches [N, H, W], int64 labels [N]), at most ``max_patches``."""
    pairs = _pairs(sampler)
    if max_patches is not None:
        pairs = itertools.islice(pairs, max_patches)
    patches, labels = [], []
    for p, lab in pairs:
        patches.append(p)
        labels.append(lab)
    if not patches:
        msg = "the sampler produced no patches (empty record list?)"
        raise ValueError(msg)
    return np.stack(patches).astype(np.uint8, copy=False), np.asarray(labels, dtype=np.int64)


def grid_tag(share: float) -> str:
    """An empty tag for the paper's good-patch sampler, else ``-g`` + the percentage of good
    patches taken at test-grid positions (``-g25``): part of a patch set's cache name."""
    return f"-g{round(share * 100)}" if share > 0 else ""


def repeat_tag(texture_repeat: Sequence[int]) -> str:
    """An empty tag when every texture keeps the sampler's patch counts, else ``-r`` + the
    factors (``-r1_1_1_2_1_1``): part of a patch set's cache name."""
    if all(int(v) == 1 for v in texture_repeat):
        return ""
    return "-r" + "_".join(str(int(v)) for v in texture_repeat)


def orientation_tag(members: Sequence[int]) -> str:
    """An empty tag for all 8 rotations/flips, else ``-d`` + the members (``-d0246``): part of a
    patch set's cache name, so sets drawn with different orientations never share a file."""
    from train.patches import ALL_ORIENTATIONS

    ks = tuple(sorted(int(k) for k in members))
    return "" if ks == ALL_ORIENTATIONS else "-d" + "".join(map(str, ks))


def patch_set(
    kind: str,
    records: Sequence[Any],
    seed: int,
    cache: str | Path | None = None,
    max_patches: int | None = None,
    **sampler_kwargs: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """The paper's ``noaug`` or ``aug`` patch set of ``records`` (§3.3), cached under ``cache``
    (suffixed with the cap, so a set capped differently is never read back by mistake)."""
    if cache is not None:
        cache = Path(cache)
        if max_patches is not None:
            cache = cache.with_name(f"{cache.name}-max{max_patches}")
        # appended, not with_suffix: "noaug-0-frac0.2" must not lose its ".2" (0.2 and 0.5 would
        # share one file)
        px, py = (
            cache.with_name(cache.name + ".patches.npy"),
            cache.with_name(cache.name + ".labels.npy"),
        )
        if px.is_file() and py.is_file():
            return np.load(px, mmap_mode="r"), np.load(py)
    from train import patches as sp

    rng = np.random.default_rng(seed)
    if kind == "noaug":
        sampler = sp.sample_noaug(records, rng, max_patches=max_patches, **sampler_kwargs)
    elif kind == "aug":
        sampler = sp.sample_aug(records, rng, max_patches=max_patches, **sampler_kwargs)
    else:
        msg = f"unknown patch set {kind!r}; expected 'noaug' or 'aug'"
        raise ValueError(msg)
    # the samplers shuffle the record order, so a capped set still spans every class
    x, y = materialize(sampler, max_patches)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.save(px, x)
        np.save(py, y)
    return x, y


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The shuffled sample order of one epoch: a pure function of (seed, epoch), so a resumed run
    sees exactly the batches the uninterrupted run would have seen."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def batch_indices(n: int, batch: int, seed: int, iteration: int) -> np.ndarray:
    """Indices of SGD iteration ``iteration`` (0-based); epochs drop their last partial batch."""
    per_epoch = max(1, n // batch)
    epoch, step = divmod(iteration, per_epoch)
    order = epoch_order(n, seed, epoch)
    return order[step * batch : (step + 1) * batch] if n >= batch else order
