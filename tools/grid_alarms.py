"""Which test-grid patches make a checkpoint flag good images of one class.

    python tools/grid_alarms.py CHECKPOINT DATA --texture 4 [--split test] [--limit 80]

For the good images of class ``--texture`` (1-based) in ``--split`` of DATA (split seed 0, the
presets'), runs the checkpoint on the 9 patches of the runtime's test grid (§4) and prints how
many images are flagged defective and at which grid positions (0..8, row-major: 0 top-left, 6
bottom-left). A false alarm that always sits in one place points at the sampler or the
generator, not at the texture as a whole.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", type=Path)
    p.add_argument("data", type=Path)
    p.add_argument("--texture", type=int, required=True, help="class, 1-based")
    p.add_argument("--split", choices=["train", "test", "all"], default="test")
    p.add_argument("--limit", type=int, default=80, help="good images looked at, at most")
    args = p.parse_args()

    from train.evaluate import load_split, predict_logits
    from train.models import load_checkpoint, normalization
    from train.patches import test_grid_patches

    model, ckpt = load_checkpoint(args.checkpoint)
    mean, std = normalization(ckpt["arch"])
    records = [
        r for r in load_split(args.data, args.split, 0)
        if r.texture == args.texture - 1 and not r.defective
    ][: args.limit]  # fmt: skip
    if not records:
        p.error(f"{args.data}: no good class-{args.texture} image in the {args.split} split")
    where: Counter[int] = Counter()
    flagged = []
    for r in records:
        logits = predict_logits(model, np.asarray(test_grid_patches(r)[0]), mean, std)
        bad = [i for i, c in enumerate(logits.argmax(1).tolist()) if c % 2 == 1]
        if bad:
            flagged.append(f"{r.path.name}: {bad}")
            where.update(bad)
    print(f"{len(flagged)}/{len(records)} good class-{args.texture} images flagged")
    print("flagged patches by grid position:", dict(sorted(where.items())))
    print("\n".join(flagged))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
