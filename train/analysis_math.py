"""The paper's representation measures (§4.1.2–4.1.5) as pure functions, no file I/O.

- :func:`weight_change_rate` — γˡ (Eq. 2)
- :class:`SparsityAccumulator` — sˡ (Eq. 3), streamed batch by batch from forward hooks
- :func:`disentanglement` — d (Eq. 4–6) on a k-NN graph, blockwise so N = 6,900 fits in memory
- :func:`total_variation`, :func:`invert`, :func:`interpolate` — Eq. 7–8 and Fig. 9
- :func:`embed_2d` — Fig. 1's L2-normalise → PCA / t-SNE

``train/analysis.py`` does the reading, the forward passes and the plotting around these.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy import sparse
from scipy.sparse.csgraph import dijkstra
from torch import nn


class AnalysisError(ValueError):
    """An analysis input has the wrong shape, dtype or content."""


# --------------------------------------------------------------------------- γ (Eq. 2)
def weight_change_rate(
    init_state: Mapping[str, torch.Tensor],
    final_state: Mapping[str, torch.Tensor],
    conv_names: Sequence[str],
) -> np.ndarray:
    """γˡ = ‖wˡ − wˡ₀‖₂ / ‖wˡ₀‖₂ for each conv module name, in the given order.

    Only the conv kernel (``<name>.weight``) counts: Eq. 2 speaks of the layer's weights, and
    lite0's convs have no bias anyway. The norm is the Frobenius (flattened L2) norm, in float64.
    """
    out = np.empty(len(conv_names), dtype=np.float64)
    for i, name in enumerate(conv_names):
        key = f"{name}.weight"
        for label, state in (("initial", init_state), ("final", final_state)):
            if key not in state:
                msg = f"weight_change_rate: {label} state dict has no {key!r}"
                raise AnalysisError(msg)
        w0 = init_state[key].detach().double()
        w1 = final_state[key].detach().double()
        if w0.shape != w1.shape:
            msg = f"weight_change_rate: {key} shape {tuple(w0.shape)} vs {tuple(w1.shape)}"
            raise AnalysisError(msg)
        n0 = float(torch.linalg.vector_norm(w0))
        if n0 == 0.0:
            msg = f"weight_change_rate: initial {key} is all zeros, γ is undefined"
            raise AnalysisError(msg)
        out[i] = float(torch.linalg.vector_norm(w1 - w0)) / n0
    return out


# --------------------------------------------------------------------------- s (Eq. 3)
def dead_channel_fraction(activation: torch.Tensor) -> torch.Tensor:
    """Per input, the fraction of channels whose activations are all exactly zero.

    ``activation`` is a post-ReLU ``[B, C, H, W]`` (or ``[B, C]``) tensor; returns float64 ``[B]``.
    """
    return dead_channels(activation).double().mean(dim=1)


def dead_channels(activation: torch.Tensor) -> torch.Tensor:
    """Bool ``[B, C]``: channel c of input b is exactly zero everywhere.

    Two read-only reductions (max and min over the spatial axes) in the tensor's own memory
    format: the former ``(flat == 0).all()`` copied channels-last activations and allocated a
    mask the size of each, which made the analysis forward pass 2.5x slower (193 vs 77 ms per
    lite0 patch on one shared core)."""
    if activation.ndim < 2:
        msg = f"activation must be [B, C, ...], got shape {tuple(activation.shape)}"
        raise AnalysisError(msg)
    a = activation.detach()
    if a.ndim == 2:
        return a == 0
    dims = tuple(range(2, a.ndim))
    return (a.amax(dim=dims) == 0) & (a.amin(dim=dims) == 0)


@dataclass
class SparsityAccumulator:
    """Streams Eq. 3 over a data set: sˡ = mean over inputs of (dead channels / channels).

    Each :meth:`update` reduces a batch to per-input fractions at once, so memory is O(layers)
    whatever the data size. :meth:`hook` gives a ``register_forward_hook`` callable.
    """

    sums: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    channels: dict[str, int] = field(default_factory=dict)
    #: per-channel count of inputs for which the channel was dead (for "always dead" statistics)
    dead_per_channel: dict[str, np.ndarray] = field(default_factory=dict)

    def update(self, name: str, activation: torch.Tensor) -> None:
        per_input = dead_channels(activation)
        frac = per_input.double().mean(dim=1)
        c = int(activation.shape[1])
        if self.channels.setdefault(name, c) != c:
            msg = f"layer {name!r}: {c} channels now, {self.channels[name]} before"
            raise AnalysisError(msg)
        dead = per_input.sum(dim=0).cpu().numpy().astype(np.int64)
        self.dead_per_channel[name] = self.dead_per_channel.get(name, 0) + dead
        self.sums[name] = self.sums.get(name, 0.0) + float(frac.sum())
        self.counts[name] = self.counts.get(name, 0) + int(frac.shape[0])

    def hook(self, name: str) -> Callable[[nn.Module, object, torch.Tensor], None]:
        def _hook(_module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
            self.update(name, output)

        return _hook

    def sparsity(self, name: str) -> float:
        if not self.counts.get(name):
            msg = f"no activations recorded for layer {name!r}"
            raise AnalysisError(msg)
        return self.sums[name] / self.counts[name]

    def result(self, names: Iterable[str]) -> np.ndarray:
        return np.array([self.sparsity(n) for n in names], dtype=np.float64)


ACTIVATIONS: tuple[type[nn.Module], ...] = (nn.ReLU, nn.ReLU6)


def post_activation_modules(
    model: nn.Module, example: torch.Tensor
) -> list[tuple[str, str | None]]:
    """For each conv (execution order), the ReLU/ReLU6 module that follows it, or ``None``.

    Found by tracing one forward pass over the leaf modules: the activation is the first ReLU or
    ReLU6 executed after the conv and before the next conv. VGG16/student: the ``nn.ReLU`` after
    each conv. lite0 (timm): the ``act`` (ReLU6) inside the ``BatchNormAct2d`` after the conv, i.e.
    after BN. lite0's linear projection convs (``conv_pwl``, BN with ``Identity`` act) get ``None``:
    without a ReLU no channel is ever exactly zero, so Eq. 3 does not apply to them.
    """
    order: list[tuple[str, nn.Module]] = []
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d) or (
            not list(module.children()) and isinstance(module, ACTIVATIONS)
        ):
            handles.append(
                module.register_forward_hook(
                    lambda m, _i, _o, n=name: order.append((n, m))  # type: ignore[misc]
                )
            )
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in handles:
            h.remove()
    pairs: list[tuple[str, str | None]] = []
    for name, module in order:
        if isinstance(module, nn.Conv2d):
            pairs.append((name, None))
        elif pairs and pairs[-1][1] is None:
            pairs[-1] = (pairs[-1][0], name)
    return pairs


# --------------------------------------------------------------------------- d (Eq. 4–6)
@dataclass(frozen=True)
class Disentanglement:
    """Eq. 6 with its bookkeeping: ``d`` is the mean over the ``pairs`` that entered it."""

    d: float
    n_points: int
    k: int
    pairs: int
    disconnected_pairs: int
    duplicate_pairs: int


def _distance_block(x: np.ndarray, sq: np.ndarray, rows: slice) -> np.ndarray:
    """Euclidean distances from ``x[rows]`` to all of ``x`` (Gram form, clipped at 0)."""
    g = x[rows] @ x.T
    d2 = sq[rows, None] + sq[None, :] - 2.0 * g
    np.maximum(d2, 0.0, out=d2)
    d = np.sqrt(d2, out=d2)
    idx = np.arange(rows.start, rows.stop)
    d[idx - rows.start, idx] = 0.0  # the Gram form leaves ~1e-8 on the diagonal
    return d


def knn_graph(x: np.ndarray, k: int = 5, block: int = 512) -> sparse.csr_matrix:
    """Symmetrised k-nearest-neighbour graph (edge i–j if either is among the other's k nearest),
    edge weight = Euclidean distance. Zero-length edges (duplicates) get the smallest positive
    float so the sparse graph keeps them."""
    n = x.shape[0]
    if not 1 <= k < n:
        msg = f"k must be in [1, N-1] = [1, {n - 1}], got {k}"
        raise AnalysisError(msg)
    sq = np.einsum("ij,ij->i", x, x)
    cols = np.empty((n, k), dtype=np.int64)
    vals = np.empty((n, k), dtype=np.float64)
    for start in range(0, n, block):
        rows = slice(start, min(start + block, n))
        d = _distance_block(x, sq, rows)
        idx = np.arange(rows.start, rows.stop)
        d[idx - start, idx] = np.inf  # a point is not its own neighbour
        nn_idx = np.argpartition(d, k - 1, axis=1)[:, :k]
        cols[rows] = nn_idx
        vals[rows] = np.take_along_axis(d, nn_idx, axis=1)
    vals = np.maximum(vals, np.finfo(np.float64).tiny)
    a = sparse.csr_matrix((vals.ravel(), (np.repeat(np.arange(n), k), cols.ravel())), shape=(n, n))
    return a.maximum(a.T).tocsr()


def disentanglement(x: np.ndarray, k: int = 5, block: int = 256) -> Disentanglement:
    """Eq. 6: d = mean over pairs i<j of |D_G − D_E| / D_E.

    D_E (Eq. 4) is recomputed block by block from the centred points; D_G (Eq. 5) is the Dijkstra
    distance on :func:`knn_graph`, run for ``block`` sources at a time. Memory is O(block·N), never
    N². Pairs with no path (disconnected graph) and duplicate pairs (D_E = 0) are left out of the
    mean and counted. Distances are float64 when the float64 copy of ``x`` stays under ~2 GB,
    otherwise float32 (both graph and D_E come from the same numbers either way, so a direct edge
    gives exactly D_G = D_E).
    """
    if x.ndim != 2 or x.shape[0] < 2:
        msg = f"representations must be [N >= 2, P], got shape {x.shape}"
        raise AnalysisError(msg)
    if not np.all(np.isfinite(x)):
        msg = "representations contain NaN or inf"
        raise AnalysisError(msg)
    dtype = np.float64 if x.size * 8 <= 2 * 1024**3 else np.float32
    xc = np.asarray(x, dtype=dtype)
    # centring (distance-preserving) cuts the Gram form's cancellation error
    xc = xc - xc.mean(axis=0, dtype=np.float64).astype(dtype)
    n = xc.shape[0]
    graph = knn_graph(xc, k=k)
    sq = np.einsum("ij,ij->i", xc, xc)
    total = 0.0
    pairs = disconnected = duplicates = 0
    for start in range(0, n, block):
        rows = slice(start, min(start + block, n))
        # graph is symmetric (knn_graph), so directed Dijkstra gives the undirected distance
        dg = dijkstra(graph, directed=True, indices=np.arange(rows.start, rows.stop))
        de = _distance_block(xc, sq, rows).astype(np.float64, copy=False)
        upper = np.arange(n)[None, :] > np.arange(rows.start, rows.stop)[:, None]
        dup = upper & (de == 0.0)
        disc = upper & ~dup & ~np.isfinite(dg)
        ok = upper & ~dup & np.isfinite(dg)
        duplicates += int(dup.sum())
        disconnected += int(disc.sum())
        pairs += int(ok.sum())
        total += float((np.abs(dg[ok] - de[ok]) / de[ok]).sum())
    d = total / pairs if pairs else math.nan
    return Disentanglement(d, n, k, pairs, disconnected, duplicates)


# ----------------------------------------------------------------------- TV, inversion (Eq. 7–8)
def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Eq. 8 summed over channels and batch: Σ ((x_{i,j+1}−x_{i,j})² + (x_{i+1,j}−x_{i,j})²)^½.

    The sum runs over i < H−1, j < W−1, where both neighbours exist (the last row and column only
    appear as neighbours; no padding). Exact value (constant image → 0 exactly); where the inner
    sum is 0 the square root's infinite derivative is replaced by 0 (a subgradient).
    """
    if x.ndim < 2:
        msg = f"total_variation needs [..., H, W], got shape {tuple(x.shape)}"
        raise AnalysisError(msg)
    dx = x[..., :-1, 1:] - x[..., :-1, :-1]
    dy = x[..., 1:, :-1] - x[..., :-1, :-1]
    u = dx * dx + dy * dy
    pos = u > 0
    safe = torch.where(pos, u, torch.ones_like(u))
    return torch.where(pos, torch.sqrt(safe), torch.zeros_like(u)).sum()


@dataclass(frozen=True)
class Inversion:
    #: per image, the iterate with the lowest objective (never worse than the start)
    x: torch.Tensor
    #: objective summed over the images at the start and after each step (feature term +
    #: λ·TV term, see :func:`invert`)
    history: list[float]
    #: per image, the objective of the iterate kept in ``x``
    best: list[float] = field(default_factory=list)


def inversion_objective(
    f: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    target: torch.Tensor,
    tv_weight: float,
) -> torch.Tensor:
    """Eq. 7 per image with both terms normalised, summed over the batch:
    Σ_b ‖f(x_b) − f_b‖² / ‖f_b‖² + λ · TV(x_b) / (H·W).

    Dividing each term by a constant only rescales λ; the normalisation makes one λ work for
    networks whose feature scales differ by orders of magnitude (Mahendran & Vedaldi do the same).
    """
    feat = f(x)
    if feat.shape != target.shape:
        msg = f"f(x) has shape {tuple(feat.shape)}, target {tuple(target.shape)}"
        raise AnalysisError(msg)
    dims = tuple(range(1, feat.ndim))
    err = (feat - target).pow(2).sum(dim=dims) / target.pow(2).sum(dim=dims).clamp_min(1e-12)
    pixels = x.shape[-1] * x.shape[-2]
    return err.sum() + tv_weight * total_variation(x) / pixels


def invert(
    f: Callable[[torch.Tensor], torch.Tensor],
    target: torch.Tensor,
    shape: Sequence[int],
    *,
    tv_weight: float = 1e-2,
    steps: int = 200,
    lr: float = 0.05,
    x0: torch.Tensor | None = None,
    seed: int = 0,
    bounds: tuple[float, float] | None = None,
) -> Inversion:
    """Eq. 7: x* = argmin ‖f(x) − f_target‖² + λ·TV(x), by Adam (cosine-decayed ``lr``) from
    ``x0`` (or mid-grey plus small noise), for each image of the batch on its own.

    ``f`` maps the optimised variable (e.g. a 1-channel image in [0, 1]) to the representation;
    ``bounds`` clamps x after each step (projected gradient), keeping the image displayable.

    Each image gets its own optimiser, forward passes and best iterate, so a batch returns
    exactly what inverting each image alone returns. A batched pass would not: TV's gradient
    jumps where two neighbours are equal (Adam's first step of ±lr makes many equal), and a
    batch-size-dependent convolution kernel's rounding (1e-8) decides which side of the jump
    a pixel lands on (1e-3 apart after 5 steps, tests/test_analysis.py).
    """
    target = target.detach()
    shape = tuple(shape)
    if x0 is None:
        gen = torch.Generator().manual_seed(seed)
        x0 = 0.5 + 0.01 * torch.randn(shape, generator=gen)
    elif tuple(x0.shape) != shape:
        msg = f"x0 shape {tuple(x0.shape)} != requested shape {shape}"
        raise AnalysisError(msg)
    if target.shape[0] != shape[0]:
        msg = f"target has {target.shape[0]} images, shape asks for {shape[0]}"
        raise AnalysisError(msg)
    kept, histories, best = [], [], []
    for b in range(shape[0]):
        x, history = _invert_one(f, target[b : b + 1], x0[b : b + 1], tv_weight, steps, lr, bounds)
        kept.append(x)
        histories.append(history)
        best.append(min(history))
    return Inversion(torch.cat(kept), [float(sum(v)) for v in zip(*histories, strict=True)], best)


def _invert_one(
    f: Callable[[torch.Tensor], torch.Tensor],
    target: torch.Tensor,
    x0: torch.Tensor,
    tv_weight: float,
    steps: int,
    lr: float,
    bounds: tuple[float, float] | None,
) -> tuple[torch.Tensor, list[float]]:
    """One image's Adam run: its best iterate and its objective at the start and each step."""
    x = x0.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([x], lr=lr)
    # cosine decay: large early steps find the coarse layout, small late ones stop pixel noise
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(steps, 1))
    history: list[float] = []
    best, best_x = math.inf, x.detach().clone()
    for _ in range(steps + 1):
        opt.zero_grad(set_to_none=True)
        loss = inversion_objective(f, x, target, tv_weight)
        value = float(loss.detach())
        history.append(value)
        if value < best:  # Adam is not a descent method: keep the best iterate seen
            best, best_x = value, x.detach().clone()
        if len(history) > steps:
            break
        loss.backward()
        opt.step()
        sched.step()
        if bounds is not None:
            with torch.no_grad():
                x.clamp_(*bounds)
    return best_x, history


def interpolate(a: torch.Tensor, b: torch.Tensor, steps: int = 8) -> list[torch.Tensor]:
    """Linear interpolation (1−t)·a + t·b at ``steps`` evenly spaced t in [0, 1] (ends included)."""
    if a.shape != b.shape:
        msg = f"interpolate: shapes differ, {tuple(a.shape)} vs {tuple(b.shape)}"
        raise AnalysisError(msg)
    if steps < 2:
        msg = f"interpolate needs steps >= 2, got {steps}"
        raise AnalysisError(msg)
    return [(1.0 - t) * a + t * b for t in torch.linspace(0.0, 1.0, steps).tolist()]


def nonzero_columns(x: np.ndarray) -> np.ndarray:
    """``x`` without the columns that are 0 for every row (dead units).

    Distances are unchanged (those coordinates add 0 to every difference), so d is exact on the
    reduced matrix, and the Gram products get cheaper by the dead fraction.
    """
    return x[:, np.any(x != 0, axis=0)]


# --------------------------------------------------------------------------- Fig. 1 embedding
def knn_agreement(points: np.ndarray, groups: np.ndarray, k: int = 5) -> float:
    """Leave-one-out k-NN accuracy of ``groups`` in an embedding: ≈1 when groups are separated,
    ≈ the majority share when they overlap. One number for "DAGM separates from natural photos"."""
    from sklearn.neighbors import NearestNeighbors

    if points.shape[0] != groups.shape[0] or points.shape[0] <= k:
        msg = f"knn_agreement: {points.shape[0]} points, {groups.shape[0]} groups, k={k}"
        raise AnalysisError(msg)
    idx = NearestNeighbors(n_neighbors=k + 1).fit(points).kneighbors(points)[1][:, 1:]
    votes = groups[idx]
    agree = [np.bincount(v).argmax() == g for v, g in zip(votes, groups, strict=True)]
    return float(np.mean(agree))


def embed_2d(
    features: np.ndarray, *, seed: int = 0, perplexity: float = 30.0
) -> tuple[np.ndarray, np.ndarray]:
    """Rows L2-normalised, then (PCA 2-D, t-SNE 2-D). t-SNE runs on ≤ 50 PCA components (the
    usual denoising step) with perplexity capped below N/3 so small sets still work."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    if features.ndim != 2 or features.shape[0] < 4:
        msg = f"features must be [N >= 4, P], got shape {features.shape}"
        raise AnalysisError(msg)
    x = np.asarray(features, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    x = x / np.maximum(norms, 1e-12)
    pca2 = PCA(n_components=2, random_state=seed).fit_transform(x)
    n_comp = min(50, x.shape[0], x.shape[1])
    reduced = PCA(n_components=n_comp, random_state=seed).fit_transform(x)
    perp = min(perplexity, max(1.0, (x.shape[0] - 1) / 3.0))
    tsne = TSNE(n_components=2, perplexity=perp, init="pca", random_state=seed).fit_transform(
        reduced
    )
    return pca2, tsne
