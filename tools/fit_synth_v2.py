"""Fit one class's texture table (``train.synth.V2_LOOKS``, or ``V4_LOOKS`` with ``--version 4``)
to a real DAGM tree.

Iterates generate → measure (``train.data_compare.measure_texture``) → correct: the radial
power profile by the log ratio of the pooled spectra, the angular gain by the orientation
histograms, the grey table by the grey-level quantiles and the broadest scale by the median local
contrast. Each iteration prints every texture statistic as distance / real leave-one-out bar
(``*`` marks a far one). ``--write`` replaces the class's entry in that table in
``train/synth.py``. Needs the real images (``tools/real_dagm.py`` builds them in a git-ignored
folder); the generator does not.

    python tools/fit_synth_v2.py --real data/real-dagm --texture 4 --iters 8 --images 24 [--write]
    python tools/fit_synth_v2.py --real data/real-dagm --texture 3 --version 4 --iters 12 \\
        --keep-grey --write
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from train import synth
from train.dagm import defect_mask, load_dagm, read_image
from train.data_compare import TEXTURE_STATS, TextureSample, measure_texture

SYNTH_PY = Path(__file__).resolve().parents[1] / "train" / "synth.py"
ETA = 0.8  # step size of every correction
LOCAL_GAIN = 25.0  # dB of the broadest scale per decade of median local-contrast ratio
PHI = (np.arange(18) + 0.5) * np.pi / 18  # the orientation histogram's bin centres
P_KNOTS = np.array([0.5 * (1 + math.erf(v / math.sqrt(2))) for v in synth.GREY_KNOTS])
#: The table each version's fitted classes read, by its name in train/synth.py.
TABLES = {2: "V2_LOOKS", 4: "V4_LOOKS"}


def real_samples(root: Path, texture: int) -> list[TextureSample]:
    out = []
    for r in load_dagm(root):
        if r.texture == texture:
            img = read_image(r)
            s = measure_texture(img, defect_mask(r, img.shape) if r.defective else None)
            if s is not None:
                out.append(s)
    return out


def synth_pool(texture: int, n: int, seed: int, version: int) -> TextureSample:
    pool = TextureSample()
    for i in range(n):
        img, e = synth.synth_image(seed, texture, i, False, version=version)
        s = measure_texture(img, None if e is None else synth.label_mask(e))
        if s is not None:
            pool = pool + s
    return pool


def quantiles(hist: npt.NDArray[np.float64], p: npt.NDArray[np.float64]) -> npt.NDArray[Any]:
    c = np.cumsum(hist) / hist.sum()
    return np.interp(p, c, np.arange(256) + 0.5)


def median_local(s: TextureSample) -> float:
    c = np.cumsum(s.local) / s.local.sum()
    return float((np.searchsorted(c, 0.5) + 0.5) * 0.5)


def report(pool: TextureSample, reals: list[TextureSample]) -> str:
    real = sum(reals, TextureSample())
    cells = []
    for st in TEXTURE_STATS:
        bar = max(st.measure(s, real - s) for s in reals)
        d = st.measure(pool, real)
        cells.append(f"{st.name} {d:.3g}/{bar:.3g}{'' if d <= bar else '*'}")
    return "; ".join(cells)


def step(
    look: synth.TextureLook, pool: TextureSample, real: TextureSample, *, grey_too: bool = True
) -> synth.TextureLook:
    """One correction of ``look`` towards the real pool's statistics (``grey_too=False`` keeps
    the grey table: where drawn structure, not the grain, makes the real dark tail)."""
    r_db = 10 * np.log10(real.spectrum / real.spectrum.sum())
    s_db = 10 * np.log10(pool.spectrum / pool.spectrum.sum())
    rad = np.array(look.radial_db)
    rad[1:] += ETA * (r_db - s_db)
    rad[0] += LOCAL_GAIN * math.log10(median_local(pool) / median_local(real))
    an = np.array(look.aniso, dtype=np.float64)
    log_ratio = 0.5 * np.log((real.orient / real.orient.sum()) / (pool.orient / pool.orient.sum()))
    for n in range(len(an) // 2):
        an[2 * n] += ETA * 2 / 18 * float((log_ratio * np.cos(2 * (n + 1) * PHI)).sum())
        an[2 * n + 1] += ETA * 2 / 18 * float((log_ratio * np.sin(2 * (n + 1) * PHI)).sum())
    grey = np.array(look.grey)
    if grey_too:
        grey += ETA * (quantiles(real.hist, P_KNOTS) - quantiles(pool.hist, P_KNOTS))
        grey = np.maximum.accumulate(grey)
    return synth.TextureLook(
        tuple(map(float, rad)),
        tuple(map(float, an)),
        tuple(map(float, grey)),
        look.shift,
        look.gain,
    )


def entry(texture: int, look: synth.TextureLook) -> str:
    """A table entry as ``train/synth.py`` spells it (ten values a line)."""

    def row(values: tuple[float, ...], digits: int) -> str:
        items = [f"{v:.{digits}f}," for v in values]
        lines = [" ".join(items[i : i + 10]) for i in range(0, len(items), 10)]
        return "(\n" + "".join(f"            {line}\n" for line in lines) + "        )"

    extra = (f"        shift={look.shift},\n" if look.shift else "") + (
        f"        gain={look.gain},\n" if look.gain else ""
    )
    return (
        f"    {texture}: TextureLook(\n        radial_db={row(look.radial_db, 2)},\n"
        f"        aniso={row(look.aniso, 4)},\n        grey={row(look.grey, 2)},\n{extra}    ),\n"
    )


def write(table: str, texture: int, look: synth.TextureLook) -> None:
    """Replace ``texture``'s entry inside ``table``'s dict literal (other tables untouched)."""
    text = SYNTH_PY.read_text()
    head = text.find(f"\n{table}: dict[int, TextureLook] = {{\n")
    if head < 0:
        sys.exit(f"{SYNTH_PY}: no {table} table")
    end = text.index("\n}\n", head) + 1  # keeps the last entry's newline
    pattern = re.compile(rf"    {texture}: TextureLook\(\n.*?\n    \),\n", re.S)
    body, n = pattern.subn(lambda _: entry(texture, look), text[head:end], count=1)
    if n != 1:
        sys.exit(f"{SYNTH_PY}: no {table} entry for texture {texture}")
    text = text[:head] + body + text[end:]
    tmp = SYNTH_PY.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(SYNTH_PY)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--real", type=Path, required=True, help="real DAGM tree (dev layout)")
    p.add_argument("--texture", type=int, required=True, help="class index, 0-based")
    p.add_argument("--iters", type=int, default=8)
    p.add_argument("--images", type=int, default=24, help="synthetic images per iteration")
    p.add_argument("--write", action="store_true", help="store the fitted entry in synth.py")
    p.add_argument("--keep-grey", action="store_true",
                   help="fit the spectrum and orientation only, not the grey table")  # fmt: skip
    p.add_argument("--version", type=int, choices=sorted(TABLES), default=2,
                   help="the generator version whose table is fitted")  # fmt: skip
    args = p.parse_args()
    table_name = TABLES[args.version]
    table: dict[int, synth.TextureLook] = getattr(synth, table_name)
    if args.texture not in table:
        p.error(f"--texture must be one of {sorted(table)} for version {args.version}")
    reals = real_samples(args.real, args.texture)
    if len(reals) < 2:
        p.error(f"{args.real}: class {args.texture + 1} has {len(reals)} real image(s); need 2")
    real = sum(reals, TextureSample())
    look = table[args.texture]
    for it in range(args.iters + 1):
        table[args.texture] = look
        t0 = time.perf_counter()
        pool = synth_pool(args.texture, args.images, 100 + it, args.version)
        print(f"iteration {it} ({time.perf_counter() - t0:.1f} s): {report(pool, reals)}")
        if it < args.iters:
            look = step(look, pool, real, grey_too=not args.keep_grey)
    if args.write:
        write(table_name, args.texture, table[args.texture])
        print(f"wrote texture {args.texture}'s {table_name} entry into {SYNTH_PY}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
