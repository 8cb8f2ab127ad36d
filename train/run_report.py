"""``RUN/REPORT.md`` of ``train run``: class counts used, balance, per-class TPR/TNR, confusion
matrix and training curves, all from ``run.json`` and the run's logs (no image of the data)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["training_curves", "write_report"]


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.2f} %"


def training_curves(out: Path) -> Path | None:
    """Teacher and student loss per logged step, as ``RUN/curves.png`` (matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    drawn = False
    for ax, name, title in (
        (axes[0], "teacher", "teacher cross-entropy"),
        (axes[1], "student", "student Eq. 1 loss"),
    ):
        log = out / "logs" / f"{name}.jsonl"
        if not log.is_file():
            continue
        pts = [
            (e["iteration"], e["loss"])
            for e in map(json.loads, log.read_text().splitlines())
            if e.get("event") == "eval" and "loss" in e
        ]
        if pts:
            ax.plot(*zip(*pts, strict=True), marker="o")
            drawn = True
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.set_yscale("log")
    if not drawn:
        plt.close(fig)
        return None
    fig.tight_layout()
    path = out / "curves.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def write_report(out: Path, state: dict[str, Any]) -> Path:
    """Write ``REPORT.md`` and return its path."""
    d, t, s = state["data"], state["test"], state["settings"]
    o = t["overall"]
    lines = [
        f"# Run on {s['data']}",
        "",
        f"`python -m train run --data {s['data']} --out {out} --preset {s['preset']} "
        f"--defect-types {s['defect_types']} --seed {s['seed']}"
        + (" --no-locations" if s["no_locations"] else "")
        + (" --gray" if s["gray"] else "")
        + "`",
        "",
        f"Machine: {state['machine']['cpu']}, {state['machine']['threads']} threads, "
        f"{state['machine']['device']}. Stage seconds: "
        + ", ".join(f"{k} {v}" for k, v in state["timings"].items())
        + ".",
        "",
        f"Resize policy `{d['resize']}`, bit depth {d['bit_depth']}, {d['channels']} channel(s)."
        + "".join(f" {n}." for n in d["notes"]),
        "",
        "## Images per class and split",
        "",
        "| class | train | val | test | train patches per image |",
        "|---|---:|---:|---:|---:|",
    ]
    per = d["patches"]["per_class"]
    for name in d["classes"]:
        c = {p: d["counts"][p][name] for p in ("train", "val", "test")}
        lines.append(
            f"| {name} | {c['train']} | {c['val']} | {c['test']} | "
            f"{per.get(name, {}).get('patches_each', 'n/a')} |"
        )
    lines += [
        "",
        f"Balance: {d['patches']['patches_per_class']} training patches per defect type and, "
        "for each group's good class, as many as all its defect types together (half of the "
        "patches are good); a class with fewer images draws more patches per image (random "
        "positions holding the defect core, "
        f"flips/turns {d['patches']['orientations']}). Weak-label images (no location): "
        f"{d['patches']['weak_labels']}.",
        "",
        "## Test split (image level, default rule of the sidecar)",
        "",
        f"{o['images']} images: TPR {_pct(o['tpr'])} ({o['tp']}/{o['tp'] + o['fn']}), "
        f"TNR {_pct(o['tnr'])} ({o['tn']}/{o['tn'] + o['fp']}), accuracy over the class table "
        f"{_pct(o['accuracy'])}, defect-type accuracy of caught defects "
        f"{_pct(o['defect_type_accuracy'])} (`pyinspect evaluate` computes the same numbers).",
        "",
        "| class | images | TPR / TNR | exact class |",
        "|---|---:|---:|---:|",
    ]
    for row in t["classes"]:
        rate = row.get("tpr", row.get("tnr"))
        lines.append(f"| {row['class']} | {row['images']} | {_pct(rate)} | {_pct(row['recall'])} |")
    conf = t["confusion"]
    lines += ["", "Confusion matrix (rows: truth, columns: prediction):", ""]
    lines.append("| | " + " | ".join(conf["columns"]) + " |")
    lines.append("|---|" + "---:|" * len(conf["columns"]))
    for name, row in zip(conf["rows"], conf["matrix"], strict=True):
        lines.append(f"| {name} | " + " | ".join(map(str, row)) + " |")
    curves = training_curves(out)
    if curves is not None:
        lines += ["", "## Training curves", "", f"![curves]({curves.name})"]
    path = out / "REPORT.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
