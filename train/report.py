"""``python -m train report RUN_DIR``: REPORT.md of a run from its ``results.json``.

Tables 2, 3 and 5 beside the paper's numbers, the deployment parity, Fig. 4 and Fig. 10 (drawn
from ``results.json``), the trials' mean ± standard error, and the "## Analysis" section that
``python -m train analyze`` splices in between ``<!-- analysis:start -->`` and
``<!-- analysis:end -->`` (kept when the report is rewritten). Every figure is embedded as an
image. Nothing is trained or evaluated here: the report is a pure function of the run directory.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from train.cli import command_parser, friendly_errors

PAPER_TABLE2 = {
    "scratch": ("Scratch (no aug)", 70.87, 1.26, 17200),
    "scratch-aug": ("Scratch (aug)", 99.55, 0.13, 320000),
    "transfer": ("Transfer (no aug)", 99.90, 0.06, 2242),
}
PAPER_TABLE3_TRANSFER = {
    "tpr": [100, 100, 100, 100, 100, 98.0],
    "tnr": [99.6, 100, 100, 100, 100, 100],
}
PAPER_TABLE5 = {
    "teacher": (134_000_000, 57.43),
    "student": (858_380, 1.46),
    "student_acc": {"transfer": 99.42, "scratch-aug": 94.92},
}
START_MARK = "<!-- analysis:start -->"
END_MARK = "<!-- analysis:end -->"
FIG4 = "fig4_accuracy_vs_iteration.png"
FIG10 = "fig10_compression_sweep.png"


def pct(v: float | None) -> str:
    """A fraction as a percentage with two decimals; ``–`` for a missing value."""
    return "–" if v is None else f"{100 * v:.2f}"


def mean_se(values: list[float]) -> tuple[float, float]:
    """Mean and standard error of the mean (sample standard deviation / √n; 0 for one value)."""
    n = len(values)
    if n == 0:
        msg = "mean_se needs at least one value"
        raise ValueError(msg)
    mean = sum(values) / n
    if n == 1:
        return mean, 0.0
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var / n)


# --------------------------------------------------------------------------- the analysis splice
def splice_report(text: str, section: str) -> str:
    """Replace the text between the analysis markers (or append markers + section)."""
    block = f"{START_MARK}\n{embed_figures(section.rstrip())}\n{END_MARK}"
    if START_MARK in text and END_MARK in text and text.index(START_MARK) < text.index(END_MARK):
        head, rest = text.split(START_MARK, 1)
        _, tail = rest.split(END_MARK, 1)
        return head + block + tail
    sep = "" if not text or text.endswith("\n\n") else ("\n" if text.endswith("\n") else "\n\n")
    return text + sep + block + "\n"


def carry_section(old: str, new: str) -> str:
    """``new`` with the analysis block of ``old`` kept (for writers that regenerate REPORT.md)."""
    if START_MARK in old and END_MARK in old and old.index(START_MARK) < old.index(END_MARK):
        section = old.split(START_MARK, 1)[1].split(END_MARK, 1)[0].strip("\n")
        return splice_report(new, section)
    return new


_FIGURE_REF = re.compile(r"`(figures/fig(\d+)_[\w-]+\.png)`")


def embed_figures(section: str) -> str:
    """After each paragraph that names a figure file (`` `figures/fig5_....png` ``), the figure
    itself (``![Fig. 5](figures/fig5_....png)``), unless the section already embeds it."""
    out: list[str] = []
    for para in section.split("\n\n"):
        out.append(para)
        for path, number in _FIGURE_REF.findall(para):
            image = f"![Fig. {number}]({path})"
            if f"]({path})" not in section and image not in out:
                out.append(image)
    return "\n\n".join(out)


# --------------------------------------------------------------------------- the report
def machine_text(m: dict[str, Any]) -> str:
    """The machine a run's numbers were measured on, as the report names it."""
    cpu = m.get("cpu") or m.get("processor") or "CPU model not recorded"
    text = f"{m.get('platform')}, {cpu}, {m.get('cpu_count')} CPUs, {m.get('torch_threads')} torch "
    text += "threads"
    if m.get("device", "cpu") != "cpu":
        text += f", PyTorch on {m['device']}"
    return text


def _header(results: dict[str, Any]) -> list[str]:
    d = results.get("data", {})
    wall = (
        f"Wall time of the invocation that wrote results.json: "
        f"{results.get('wall_seconds_main', 0) / 60:.1f} min to the shipped student"
    )
    if "wall_seconds" in results:
        wall += f", {results['wall_seconds'] / 60:.1f} min in all"
        if results.get("wall_includes_sweep", bool(results.get("sweep"))):
            wall += " with the sweep."
        elif not results.get("sweep"):
            wall += " (no sweep)."
        else:
            wall += " (the sweep's rows are taken from results.json)."
    else:
        wall += "."
    lines = [
        f"# Reproduction report: preset `{results.get('preset')}`",
        "",
        f"Data: `{d.get('root')}`{data_text(results)}: {d.get('train_images')} train / "
        f"{d.get('test_images')} test images (split seed {d.get('split_seed')}). Machine: "
        f"{machine_text(results['machine'])}. " + wall,
    ]
    if results.get("reused_stages"):
        total = sum(results.get("timings", {}).values()) / 60
        lines.append(
            f"Taken from this directory's checkpoints instead of recomputed: "
            f"{', '.join(results['reused_stages'])} (their measured times are kept under Stage "
            f"timings); the stage timings add up to {total:.1f} min."
        )
    lines += [
        f"Parts of this run were measured on {machine_text(e['machine'])} "
        f"({e.get('wall_seconds', 0) / 60:.1f} min); their stage timings are listed apart."
        for e in results.get("other_machines", [])
    ]
    return [
        *lines,
        "",
        f"Regenerate this file with `python -m train report {results.get('out', 'RUN_DIR')}`; "
        f"rerun the experiment with `{rerun_command(results)}`"
        " (stages whose output exists are reused).",
    ]


def data_text(results: dict[str, Any]) -> str:
    """What the data was beyond its folder: the synthetic generator version (a run before the
    option: 1) and its fingerprint, and a non-zero share of good patches at grid positions."""
    config = results.get("config") or {}
    fingerprint = results.get("data", {}).get("fingerprint")
    text = f", synthetic generator version {config.get('synth_version', 1)}"
    if fingerprint:
        text += f" (fingerprint `{fingerprint}`)"
    share = config.get("good_grid_share", 0.0)
    if share:
        text += f", {share:.0%} of the good training patches at test-grid positions"
    repeat = config.get("aug_texture_repeat") or []
    more = [f"class {k} ×{v}" for k, v in enumerate(repeat, 1) if v != 1]
    if more:
        text += ", distillation patches per image " + ", ".join(more)
    return text


#: Preset fields that ``reproduce`` flags override, and the flag of each.
_OVERRIDE_FLAGS = (
    ("data_root", "--data"),
    ("synth_version", "--synth-version"),
    ("good_grid_share", "--good-grid-share"),
    ("aug_texture_repeat", "--aug-texture-repeat"),
    ("aug_max_patches", "--aug-max-patches"),
    ("distill_epochs", "--distill-epochs"),
    ("distill_hard_weight", "--distill-hard-weight"),
    ("distill_restarts", "--distill-restarts"),
    ("defect_offsets_seed", "--defect-offsets-seed"),
)


def rerun_command(results: dict[str, Any]) -> str:
    """The ``reproduce`` command line that runs this configuration again: the preset, plus a
    flag for each field of ``results["config"]`` that differs from the preset's value."""
    from train.presets import get_preset

    name = results.get("preset")
    parts = [f"python -m train reproduce --preset {name}"]
    config = results.get("config") or {}
    try:
        base = get_preset(str(name))
    except KeyError:  # a preset this version does not have: the name alone
        return parts[0]
    for key, flag in _OVERRIDE_FLAGS:
        default = getattr(base, key, None)
        value = config.get(key, default)
        if isinstance(default, tuple):  # results.json holds it as a list
            default = list(default)
        if key in config and value != default:
            shown = ",".join(map(str, value)) if isinstance(value, list) else value
            parts.append(f"{flag} {shown}")
    iters = {t.get("iters") for t in config.get("teachers", []) if isinstance(t, dict)}
    if len(iters) == 1 and iters != {t.iters for t in base.teachers}:
        parts.append(f"--teacher-iters {iters.pop()}")
    if "out" in results:
        parts.append(f"--out {results['out']}")
    return " ".join(parts)


def _table2_3(results: dict[str, Any], fig: str) -> list[str]:
    t = results.get("teachers", {})
    lines = [
        "",
        "## Table 2: teachers (accuracy over 12 classes, §4 protocol, held-out 20 %)",
        "",
        "| teacher | arch | train patches | iterations | test images | accuracy % (ours) | "
        "convergence it (ours) | paper accuracy % | paper convergence it |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in t.items():
        ref = PAPER_TABLE2.get(name, (name, None, None, None))
        fit = r.get("fit", {})
        paper = "" if ref[1] is None else f"{ref[1]:.2f} ± {ref[2]:.2f}"
        lines.append(
            f"| {ref[0]} | {r.get('arch')} ({r.get('init')}) | {r.get('train_patches')} | "
            f"{fit.get('iterations')} | {r['test']['images']} | {pct(r['test']['accuracy'])} | "
            f"{fit.get('convergence_iteration')} | {paper} | {ref[3] or ''} |"
        )
    lines += [
        "",
        "Convergence = first evaluated iteration within 0.5 points of the best intermediate "
        "accuracy (intermediate evaluations on a fixed test subset).",
        "",
        f"![Fig. 4]({fig})",
        "",
        "## Table 3: per-texture TPR / TNR (%)",
        "",
        "| texture | "
        + " | ".join(f"{n} TPR | {n} TNR" for n in t)
        + " | paper transfer TPR | paper transfer TNR |",
        "|" + "---|" * (1 + 2 * len(t) + 2),
    ]
    for k in range(6):
        cells = []
        for r in t.values():
            cells += [pct(r["test"]["tpr"][k]), pct(r["test"]["tnr"][k])]
        lines.append(
            f"| {k + 1} | "
            + " | ".join(cells)
            + f" | {PAPER_TABLE3_TRANSFER['tpr'][k]} | {PAPER_TABLE3_TRANSFER['tnr'][k]} |"
        )
    return lines


def _table5(results: dict[str, Any]) -> list[str]:
    t, s = results.get("teachers", {}), results.get("students", {})
    exp = results.get("export", {})
    lines = [
        "",
        "## Table 5: teacher vs student",
        "",
        "| model | parameters | accuracy % (ours) | ms / image (ours, the machine above) | paper "
        "parameters | paper accuracy % | paper ms / image (TITAN Xp) |",
        "|---|---|---|---|---|---|---|",
    ]
    tms = exp.get("teacher_torch_ms_per_frame")
    for name, r in t.items():
        lines.append(
            f"| teacher {name} ({r.get('arch')}) | {r.get('parameters'):,} | "
            f"{pct(r['test']['accuracy'])} | "
            f"{'' if tms is None else f'{tms:.1f} (PyTorch, batch 9)'} | 134 million | "
            f"{PAPER_TABLE2.get(name, ('', ''))[1]} | 57.43 |"
        )
    lat = exp.get("latency_folded", {})
    for name, r in s.items():
        ms = ""
        if lat and name == results["config"].get("ship"):
            path = lat.get("path", "onnxruntime")
            ms = f"{lat['median_ms']:.2f} (Inspector.run: {path}, folded, whole frame)"
        lines.append(
            f"| student of {name} {tuple(r['widths'])} | {r['parameters']:,} | "
            f"{pct(r['test']['accuracy'])} | {ms} | 858,380 | "
            f"{PAPER_TABLE5['student_acc'].get(name, '')} | 1.46 |"
        )
    for name, r in s.items():
        off = r.get("defect_offsets")
        if off:
            lines += ["", *defect_offsets_lines(name, off)]
    if exp:
        lines += ["", "## Deployment parity (PyTorch vs `pyinspect.Inspector`)", ""]
        for variant, v in exp.get("inspector", {}).items():
            lines.append(
                f"- {variant}: accuracy {pct(v['accuracy'])} %, "
                f"{v['parity']['mismatches']} / {v['parity']['images']} verdicts differ; "
                f"max |Δlogit| at export {exp['files'][variant]['max_abs_logit_diff']:.2e}"
            )
    return lines


def defect_offsets_lines(name: str, off: dict[str, Any]) -> list[str]:
    """What the student's defect offsets are, where they were chosen and what they changed."""
    key = off.get("key", {})
    per = ", ".join(
        f"{t + 1}: {b} -> {a}"
        for t, (b, a) in enumerate(
            zip(off["errors_before_per_texture"], off["errors_after_per_texture"], strict=True)
        )
    )
    return [
        f"Student of {name}: per-texture defect offsets (logits subtracted from each texture's"
        f" defective class, folded into FC-12's bias; `train/defect_offsets.py`) "
        f"{', '.join(f'{v:g}' for v in off['offsets'])}, chosen on {off['images']:,} fresh"
        f" synthetic images (generator version {key.get('version')}, seed {key.get('seed')};"
        f" not the training or test images). Errors there {off['errors_before']} ->"
        f" {off['errors_after']} (per texture: {per}). Test accuracy with the paper's argmax"
        f" rule alone: {pct(off['test_without_offsets']['accuracy'])} %; the table gives it"
        " with the offsets."
    ]


def _trials(results: dict[str, Any]) -> list[str]:
    trials = results.get("trials") or {}
    seeds = trials.get("seeds") or []
    if len(seeds) < 2:
        return []
    lines = [
        "",
        f"## Trials: {len(seeds)} random 80/20 splits (split seeds {', '.join(map(str, seeds))})",
        "",
        "| model | trials | accuracy % (mean ± standard error) | accuracy % per trial |",
        "|---|---|---|---|",
    ]
    for role in ("teachers", "students"):
        for name, accs in (trials.get(role) or {}).items():
            mean, se = mean_se(accs)
            lines.append(
                f"| {role[:-1]} {name} | {len(accs)} | {100 * mean:.2f} ± {100 * se:.2f} | "
                + ", ".join(pct(a) for a in accs)
                + " |"
            )
    lines += [
        "",
        "Trial 1 is the run above; the others are in `trials/seed-<seed>/` (no sweep). Standard "
        "error = sample standard deviation / √trials.",
    ]
    return lines


def _sweep(results: dict[str, Any], out: Path, draw: bool) -> list[str]:
    if not results.get("sweep"):
        if not (results.get("config") or {}).get("sweep"):
            return []  # the preset has no sweep
        return [
            "",
            "## Fig. 10: compression sweep",
            "",
            "Not run on this data (`reproduce --skip-sweep`): the preset's sweep points are in"
            " `config.sweep` of results.json; a later `reproduce` without `--skip-sweep` on this"
            " directory adds them.",
        ]
    if draw:
        plot_fig10(results, out / FIG10)
    lines = [
        "",
        "## Fig. 10 (partial): compression sweep",
        "",
        "| teacher | widths | parameters | epochs | accuracy % |",
        "|---|---|---|---|---|",
    ]
    for v in sweep_rows(results):
        mark = " (the preset's student)" if v.get("preset_student") else ""
        lines.append(
            f"| {v['teacher']} | {tuple(v['widths'])}{mark} | "
            f"{v['parameters']:,} | {v['epochs']} | {pct(v['accuracy'])} |"
        )
    return [*lines, "", f"![Fig. 10]({FIG10})"]


def _timings(results: dict[str, Any]) -> list[str]:
    tim = results.get("timings", {})
    lines: list[str] = []
    if tim:
        lines += ["", "## Stage timings (s)", "", ", ".join(f"{k}: {v}" for k, v in tim.items())]
    for e in results.get("other_machines", []):
        if e.get("timings"):
            lines += [
                "",
                f"Measured on {machine_text(e['machine'])}: "
                + ", ".join(f"{k}: {v}" for k, v in e["timings"].items()),
            ]
    return lines


def render_report(results: dict[str, Any], out: Path, *, draw: bool = True) -> str:
    """The report's text (without the analysis section); ``draw`` redraws Fig. 4 and Fig. 10."""
    if draw:
        plot_fig4(results, out / FIG4)
    lines = [
        *_header(results),
        *_table2_3(results, FIG4),
        *_table5(results),
        *_trials(results),
        *_sweep(results, out, draw),
    ]
    if results.get("notes"):
        lines += ["", "## Notes", "", *[f"- {n}" for n in results["notes"]]]
    lines += _timings(results)
    return "\n".join(lines) + "\n"


def write_report(results: dict[str, Any], out: Path, *, draw: bool = True) -> Path:
    """Write ``out/REPORT.md`` from ``results``, keeping the analysis section already there."""
    text = render_report({"out": str(out), **results}, out, draw=draw)
    path = out / "REPORT.md"
    if path.is_file():
        text = carry_section(path.read_text(), text)
    path.write_text(text)
    return path


# --------------------------------------------------------------------------- figures
def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_fig4(results: dict[str, Any], path: Path) -> Path:
    """Fig. 4: each teacher's intermediate test accuracy against SGD iterations."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    for name, r in results.get("teachers", {}).items():
        curve = r.get("fit", {}).get("curve", [])
        if curve:
            its, acc = zip(*curve, strict=True)
            ax.plot(its, [100 * a for a in acc], marker="o", label=f"{name} ({r.get('arch')})")
    ax.set_xscale("log")
    ax.set_xlabel("SGD iterations (batch 32)")
    ax.set_ylabel("test accuracy % (subset, §4 protocol)")
    ax.set_title(f"Fig. 4 reproduction: preset {results.get('preset')}")
    ax.grid(True, which="both", alpha=0.3)
    if ax.lines:
        ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def sweep_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Fig. 10's points by teacher, widest first; a sweep teacher's main student (trained longer,
    marked ``preset_student``) joins its teacher's rows, so the curve ends at the student the
    preset made."""
    rows = [dict(v) for v in results.get("sweep", {}).values()]
    teachers = list(dict.fromkeys(v["teacher"] for v in rows))
    for name in teachers:
        s = results.get("students", {}).get(name)
        if s and s.get("test"):
            rows.append(
                {
                    "teacher": name,
                    "widths": s["widths"],
                    "parameters": s["parameters"],
                    "epochs": results.get("config", {}).get("distill_epochs"),
                    "accuracy": s["test"]["accuracy"],
                    "preset_student": True,
                }
            )
    return sorted(rows, key=lambda v: (teachers.index(v["teacher"]), -v["parameters"]))


def plot_fig10(results: dict[str, Any], path: Path) -> Path:
    """Fig. 10: student accuracy against parameters, one curve per teacher."""
    plt = _plt()
    rows = sweep_rows(results)
    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    for name in dict.fromkeys(v["teacher"] for v in rows):
        pts = [v for v in rows if v["teacher"] == name and not v.get("preset_student")]
        label = f"students of {name} ({pts[0]['epochs']} epochs)" if pts else name
        line = ax.plot(
            [v["parameters"] for v in pts],
            [100 * v["accuracy"] for v in pts],
            marker="o",
            label=label,
        )
        for v in rows:
            if v["teacher"] == name and v.get("preset_student"):
                ax.plot(
                    v["parameters"],
                    100 * v["accuracy"],
                    marker="*",
                    markersize=12,
                    linestyle="none",
                    color=line[0].get_color(),
                    label=f"{name}'s preset student ({v['epochs']} epochs)",
                )
    ax.set_xscale("log")
    ax.set_xlabel("student parameters")
    ax.set_ylabel("test accuracy % (§4 protocol)")
    ax.set_title(f"Fig. 10 reproduction (partial): preset {results.get('preset')}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------- command
@friendly_errors
def main(argv: list[str] | None = None) -> int:
    ap = command_parser("report", __doc__)
    ap.add_argument("run", type=Path, help="run directory holding results.json, e.g. results/cpu")
    ap.add_argument(
        "--keep-figures",
        action="store_true",
        help="leave Fig. 4 and Fig. 10 as they are on disk instead of redrawing them",
    )
    args = ap.parse_args(argv)
    path = args.run / "results.json"
    if not path.is_file():
        msg = f"{path}: no results.json (run `python -m train reproduce --preset ...` first)"
        raise FileNotFoundError(msg)
    results = json.loads(path.read_text())
    print(write_report(results, args.run, draw=not args.keep_figures))
    return 0
