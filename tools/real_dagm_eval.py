"""Side-by-side verdicts of DAGM models on a real DAGM copy in the development layout.

    python tools/real_dagm_eval.py data/real-dagm --label calibration \\
        --model v1=results/cpu-v1/student.onnx --model v2=models/student.onnx \\
        --json results/cpu/real-calibration.json --md results/cpu/real-calibration.md

The real images stay where they are (git-ignored, never committed); the outputs name each image
by its path relative to the data root and its content hash, so a result can be checked against
the same copy without holding the pixels. The three numbers per model are the DAGM issue's goals:
texture right (over all images), good images passed, defective images caught. ``--label`` says what
the images are to the model (``calibration``: the images the generator was fitted to, not a test).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pyinspect import Inspector  # noqa: E402
from train.dagm import load_dagm, read_image  # noqa: E402


@dataclass(frozen=True)
class Verdict:
    image: str  # relative to the data root
    sha256: str
    texture: int  # 0-based, truth
    defective: bool  # truth
    predicted_texture: int
    predicted_defective: bool


def parse_model(text: str) -> tuple[str, Path]:
    """``NAME=PATH`` (or a bare path, named by its file stem)."""
    name, sep, path = text.partition("=")
    if not sep:
        name, path = Path(text).stem, text
    if not name or not path:
        msg = f"--model {text!r}: expected NAME=PATH"
        raise argparse.ArgumentTypeError(msg)
    return name, Path(path)


def judge(model: Path, root: Path) -> list[Verdict]:
    """Every image of ``root`` through ``Inspector(model)``, in the reader's order."""
    out = []
    with Inspector(model) as inspector:
        for rec in load_dagm(root):
            result = inspector.run(read_image(rec))
            path = Path(rec.path)
            out.append(
                Verdict(
                    image=path.relative_to(root).as_posix(),
                    sha256=hashlib.sha256(path.read_bytes()).hexdigest()[:16],
                    texture=int(rec.texture),
                    defective=bool(rec.defective),
                    predicted_texture=int(result.texture),
                    predicted_defective=bool(result.defective),
                )
            )
    return out


def summarise(verdicts: list[Verdict]) -> dict[str, Any]:
    """Exact counts: texture right, good passed, defective caught; overall and per class."""

    def counts(vs: list[Verdict]) -> dict[str, int]:
        good = [v for v in vs if not v.defective]
        bad = [v for v in vs if v.defective]
        return {
            "images": len(vs),
            "texture_right": sum(v.predicted_texture == v.texture for v in vs),
            "good": len(good),
            "good_passed": sum(not v.predicted_defective for v in good),
            "defective": len(bad),
            "defective_caught": sum(v.predicted_defective for v in bad),
            "label_right": sum(
                v.predicted_texture == v.texture and v.predicted_defective == v.defective
                for v in vs
            ),
        }

    classes = sorted({v.texture for v in verdicts})
    return {
        "all": counts(verdicts),
        "per_class": {str(k + 1): counts([v for v in verdicts if v.texture == k]) for k in classes},
    }


def fraction(n: int, d: int) -> str:
    return f"{n}/{d} ({100 * n / d:.1f} %)" if d else "-"


def markdown(label: str, root: Path, results: dict[str, dict[str, Any]], command: str) -> str:
    names = list(results)
    lines = [
        f"# Real DAGM images ({label})",
        "",
        f"Data: `{root}` (real DAGM 2007 images, git-ignored; see docs/data.md for how the folder "
        "is assembled). Each image is judged whole by `pyinspect.Inspector` (9 patches, "
        "texture by majority, defective if any patch is).",
        f"Command: `{command}`",
        "",
        "| | " + " | ".join(names) + " |",
        "|---|" + "---:|" * len(names),
    ]
    rows = [
        ("texture right", "texture_right", "images"),
        ("good images passed", "good_passed", "good"),
        ("defective images caught", "defective_caught", "defective"),
        ("label right (texture and verdict)", "label_right", "images"),
    ]
    for title, num, den in rows:
        cells = [
            fraction(results[n]["summary"]["all"][num], results[n]["summary"]["all"][den])
            for n in names
        ]
        lines.append(f"| {title} | " + " | ".join(cells) + " |")
    lines += ["", "Per class (texture right · good passed · defective caught):", ""]
    lines.append("| class | " + " | ".join(names) + " |")
    lines.append("|---|" + "---|" * len(names))
    classes = list(results[names[0]]["summary"]["per_class"])
    for k in classes:
        cells = []
        for n in names:
            c = results[n]["summary"]["per_class"][k]
            parts = [f"{c['texture_right']}/{c['images']}"]
            parts.append(f"{c['good_passed']}/{c['good']}" if c["good"] else "-")
            parts.append(f"{c['defective_caught']}/{c['defective']}" if c["defective"] else "-")
            cells.append(" · ".join(parts))
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data", type=Path, help="real DAGM copy, development layout")
    ap.add_argument(
        "--model",
        type=parse_model,
        action="append",
        required=True,
        metavar="NAME=PATH",
        help="a model to judge with (repeatable)",
    )
    ap.add_argument(
        "--label",
        default="calibration",
        help="what the images are to these models (default: calibration)",
    )
    ap.add_argument("--json", type=Path, help="write the per-image verdicts and counts here")
    ap.add_argument("--md", type=Path, help="write the side-by-side table here")
    args = ap.parse_args(argv)
    results: dict[str, dict[str, Any]] = {}
    for name, path in args.model:
        if name in results:
            ap.error(f"--model {name!r} given twice")
        verdicts = judge(path, args.data)
        results[name] = {
            "model": str(path),
            "model_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "summary": summarise(verdicts),
            "verdicts": [v.__dict__ for v in verdicts],
        }
    command = "python tools/real_dagm_eval.py " + " ".join(sys.argv[1:] if argv is None else argv)
    text = markdown(args.label, args.data, results, command)
    print(text)
    if args.json:
        doc = {
            "label": args.label,
            "data": str(args.data),
            "machine": platform.platform(),
            "command": command,
            "models": results,
        }
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
    if args.md:
        args.md.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
