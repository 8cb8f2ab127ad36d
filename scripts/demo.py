"""`make demo`: inspect a fresh synthetic DAGM sample with the shipped student, runtime only.

1. Generates a small synthetic sample (numpy + OpenCV, no torch) with a seed no training run used,
   from the generator version the student was trained on (its precision-guard record).
2. Runs ``pyinspect inspect`` on it with ``models/student.onnx``: a verdict per image, the accuracy
   against the folder names and the per-frame latency.
3. Writes one overlay picture (patch grid, defective patches outlined, verdict text) to
   ``docs/demo_overlay.png``: a good and a defective frame of the same texture side by side.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # train.synth / train.dagm are plain numpy + OpenCV modules

#: Training used seed 0 (cpu preset), 101 (smoke) and the tests' small seeds; never this one.
DEMO_SEED = 20261125


def trained_on(model: Path) -> int:
    """The synthetic generator version the model was trained on: that of the synthetic frames
    its precision guard runs on (``<model>.guard.json``, written by the training run's export),
    else 1. ``NoGuardFramesError`` names a record that cannot be read."""
    from pyinspect.precision_guard import guard_frames, guard_path

    if not guard_path(model).is_file():
        return 1
    return guard_frames(model).synth_version or 1


def make_sample(out: Path, per_class: int, seed: int, version: int) -> Path:
    from train.synth import synthesize

    if out.is_dir() and any(out.glob("Class*")):
        print(f"reusing the sample in {out}")
        return out
    out.mkdir(parents=True, exist_ok=True)
    secs = synthesize(
        out, good=per_class, defective=per_class, seed=seed, progress=False, version=version
    )
    print(
        f"generated {6 * 2 * per_class} synthetic DAGM images (generator version {version}, seed"
        f" {seed}) in {out} ({secs:.1f} s)"
    )
    return out


def write_overlay(sample: Path, model: Path, dest: Path) -> Path:
    """Good + defective frame of one texture, each with the runtime's overlay, side by side."""
    import cv2

    from pyinspect import Inspector
    from pyinspect.cli import render_overlay
    from pyinspect.frames import load_frame

    with Inspector(model) as insp:
        # first correct good frame and first correct defective frame per texture
        good_ok: dict[int, np.ndarray] = {}
        bad_ok: dict[int, np.ndarray] = {}
        for k in (3, 1, 2, 4, 5, 6):  # prefer texture 3: its defect is easy to see
            for folder, want, found in (
                (f"Class{k}", False, good_ok),
                (f"Class{k}_def", True, bad_ok),
            ):
                for p in sorted((sample / folder).glob("*.png")):
                    img = load_frame(p)
                    res = insp.run(img)
                    if res.defective == want and res.texture == k - 1:
                        found[k] = render_overlay(img, res, insp.spec)
                        break
        same = [k for k in good_ok if k in bad_ok]
        if same:  # a good and a defective frame of one texture
            chosen = [good_ok[same[0]], bad_ok[same[0]]]
        elif good_ok and bad_ok:  # the model is right on each kind for different textures
            chosen = [next(iter(good_ok.values())), next(iter(bad_ok.values()))]
        else:  # nothing right: show the first defective frame as it was judged
            p = sorted(sample.glob("Class*_def/*.png"))[0]
            img = load_frame(p)
            chosen = [render_overlay(img, insp.run(img), insp.spec)]
    gap = np.full((chosen[0].shape[0], 16, 3), 255, np.uint8)
    canvas = chosen[0] if len(chosen) == 1 else np.hstack([chosen[0], gap, chosen[1]])
    dest.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(dest), canvas)
    return dest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", type=Path, default=ROOT / "models" / "student.onnx")
    ap.add_argument("--out", type=Path, default=ROOT / "demo_out")
    ap.add_argument("--per-class", type=int, default=12, help="good and defective per texture")
    ap.add_argument("--seed", type=int, default=DEMO_SEED)
    ap.add_argument("--overlay", type=Path, default=ROOT / "docs" / "demo_overlay.png")
    args = ap.parse_args(argv)
    if not args.model.is_file():
        print(
            f"demo: {args.model} not found (the shipped student); run "
            "`python -m train reproduce --preset cpu` or check out models/",
            file=sys.stderr,
        )
        return 2
    from pyinspect.precision_guard import NoGuardFramesError
    from train.synth import generator_fingerprint

    try:
        version = trained_on(args.model)
    except NoGuardFramesError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 2
    # the frames come from the generator version the student was trained on, in a folder
    # named by its fingerprint: a sample another generator wrote is never reused
    fingerprint = generator_fingerprint(args.seed, version)
    sample = make_sample(
        args.out / f"sample-v{version}-seed{args.seed}-{fingerprint}",
        args.per_class,
        args.seed,
        version,
    )
    # the files themselves (not the folder): one clean line per image, no progress bar
    files = [os.path.relpath(p, ROOT) for p in sorted(sample.glob("Class*/*.png"))]
    cmd = [sys.executable, "-m", "pyinspect", "inspect", *files, "--model", str(args.model)]
    print(
        "$ pyinspect inspect",
        sample.relative_to(ROOT) if sample.is_relative_to(ROOT) else sample,
        "--model",
        args.model.relative_to(ROOT) if args.model.is_relative_to(ROOT) else args.model,
        flush=True,
    )
    rc = subprocess.call(cmd, cwd=ROOT)
    dest = write_overlay(sample, args.model, args.overlay)
    print(f"overlay written to {dest}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
