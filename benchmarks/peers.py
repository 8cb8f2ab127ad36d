"""The direct student path against the engines a user would pick instead, in one run, on the
same frames, in interleaved rounds: ``benchmarks/latency.py --peers`` (issue 23's acceptance).

Every path takes a 512×512 uint8 gray frame to a verdict (texture, defective) with the same
thread count:

* **direct**: ``Inspector.run`` on the direct student runner (f32; rule: argmax), plus the same
  runner at the other kernel levels this CPU has (``isa="avx2"`` on an AVX-512 machine) and in
  bf16 where the verdict-parity guard accepts it (``Inspector(precision="bf16")``);
* **(a) tiled**: what a user writes first: NumPy tiling (slices, float32, the sidecar's
  normalisation), the per-patch model at batch 9 on ONNX Runtime or OpenVINO, a NumPy softmax +
  argmax + majority vote; each engine at f32 and at the lower precisions it offers on this CPU:
  ONNX Runtime int8 (static QDQ quantization, ``onnxruntime.quantization``, calibrated on
  synthetic DAGM-like frames), OpenVINO bf16 (``INFERENCE_PRECISION_HINT``, where the CPU has
  avx512_bf16 or AMX: OpenVINO's ``BF16`` capability) and OpenVINO int8 (the same QDQ model);
* **(b) full-frame**: the same engines and precisions on the student's whole-frame graph
  (``pyinspect.export.fullframe``: conv1–4 shared over the frame, rings per patch, conv5 + FC per
  patch: the direct runner's algorithm), uint8 frame in, logits out, the same NumPy vote.

Goals: the direct path at least ``GOAL_TILED``× faster than the best of (a) and ``GOAL_FULLFRAME``×
faster than the best of (b), judged for the f32 direct path and for the fastest direct row.
Each path's verdicts are compared with the direct path's on the timed frames. A path this
machine cannot run is listed with the reason.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common
from throughput import dagm_like_frames

GOAL_TILED = 5.0
GOAL_FULLFRAME = 2.0
CALIBRATION_FRAMES = 16
TIMED_FRAMES = 8
FRAME = 512
DIRECT = "direct"
GROUPS = {DIRECT: "direct student path", "tiled": "(a) NumPy tiling", "fullframe": "(b) full-frame"}

ENGINE_KEYS = {"ONNX Runtime": "ort", "OpenVINO": "openvino"}  # row keys: tiled-ort-int8, ...

Verdict = tuple[int, bool]  # texture, defective


@dataclass
class PeerPath:
    """One timed path: frame -> verdict (or InspectionResult for the direct path)."""

    key: str
    group: str  # DIRECT, "tiled", "fullframe"
    engine: str
    precision: str
    run: Callable[[np.ndarray], Any]
    close: Callable[[], None] = lambda: None

    @property
    def title(self) -> str:
        if self.group == DIRECT:
            return f"`Inspector.run`, direct student runner ({self.engine}), {self.precision}"
        what = "NumPy tiling +" if self.group == "tiled" else "full-frame graph on"
        batch = ", batch 9" if self.group == "tiled" else ""
        return f"{what} {self.engine} {self.precision}{batch}"


# ---- the user's code around an engine -----------------------------------------------------------
def numpy_tiler(spec: Any, boxes: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """frame -> float32 [N, C, 224, 224], normalised as the sidecar says, in plain NumPy."""
    norm = spec.normalization
    c = spec.input.channels
    scale = (1.0 / (spec.max_value * np.array(norm.std, np.float32))).reshape(1, c, 1, 1)
    offset = (-np.array(norm.mean, np.float32) / np.array(norm.std, np.float32)).reshape(1, c, 1, 1)
    scale, offset = scale.astype(np.float32), offset.astype(np.float32)
    cuts = [(slice(y, y + h), slice(x, x + w)) for x, y, w, h in boxes.tolist()]

    def tile(frame: np.ndarray) -> np.ndarray:
        patches = np.stack([frame[r, s] for r, s in cuts])[:, None].astype(np.float32)
        return patches * scale + offset

    return tile


def numpy_vote(spec: Any) -> Callable[[np.ndarray], Verdict]:
    """logits [N, K] -> (majority texture, any patch defective), softmax first as a user does."""
    texture_of, defective_of = spec.class_texture, spec.class_defective
    n_textures = len(spec.textures)

    def vote(logits: np.ndarray) -> Verdict:
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        cls = (e / e.sum(axis=1, keepdims=True)).argmax(axis=1)
        texture = int(np.bincount(texture_of[cls], minlength=n_textures).argmax())
        return texture, bool(defective_of[cls].any())

    return vote


# ---- engines ------------------------------------------------------------------------------------
def quantize_int8(src: Path, dst: Path, feeds: list[dict[str, np.ndarray]]) -> Path:
    """Static int8 QDQ quantization (uint8 activations, per-channel int8 weights, min-max
    calibration on ``feeds``), after ONNX Runtime's recommended pre-processing."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Feeds(CalibrationDataReader):
        def __init__(self) -> None:
            self.feeds = iter(feeds)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.feeds, None)

    prepared = dst.with_name(dst.stem + ".pre.onnx")
    quant_pre_process(str(src), str(prepared))
    reader = Feeds()
    quantize_static(
        str(prepared),
        str(dst),
        reader,
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )
    return dst


def ort_runner(model: Path, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    """ONNX Runtime with its defaults but the thread count: input -> first output."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x})[0]


def openvino_runner(
    model: Path, precision: str, shape: list[int] | None, threads: int
) -> Callable[[np.ndarray], np.ndarray]:
    """OpenVINO on the CPU, latency hint, one stream, ``precision`` as the inference hint (f32
    must be asked for: the CPU plugin defaults to bf16 where the CPU has it)."""
    import openvino as ov

    core = ov.Core()
    net = core.read_model(str(model))
    if shape is not None:
        net.reshape({net.inputs[0].get_any_name(): shape})
    config = {
        "INFERENCE_PRECISION_HINT": precision,
        "INFERENCE_NUM_THREADS": threads,
        "PERFORMANCE_HINT": "LATENCY",
        "NUM_STREAMS": 1,
    }
    request = core.compile_model(net, "CPU", config).create_infer_request()

    def run(x: np.ndarray) -> np.ndarray:
        request.infer([x])
        return request.get_output_tensor(0).data

    return run


def openvino_capabilities() -> tuple[list[str], str]:
    """OpenVINO's CPU ``OPTIMIZATION_CAPABILITIES`` (``BF16``, ``INT8``, ...), or why none."""
    if importlib.util.find_spec("openvino") is None:
        return [], "openvino is not installed (pip install pyinspect[openvino])"
    import openvino as ov

    return list(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")), ""


# ---- the paths ----------------------------------------------------------------------------------
def build_paths(
    model: Path, threads: int, folder: Path, skipped: list[dict[str, str]]
) -> list[PeerPath]:
    """Every path this machine runs (quantized and full-frame models written into ``folder``);
    each one that cannot be built is appended to ``skipped`` with the reason."""
    from pyinspect import Inspector

    insp = Inspector(model, threads=threads, threshold="argmax")
    if insp.runner != "student":
        insp.close()
        msg = f"{model}: Inspector does not use the direct student runner: {insp.runner_note}"
        raise RuntimeError(msg)
    from pyinspect.runners.student import kernel_isas

    isa = kernel_isas()[-1]  # what isa="auto" picks: the highest level
    paths = [PeerPath(DIRECT, DIRECT, f"{isa} kernels", "f32", insp.run, insp.close)]
    try:
        _direct_variants(paths, model, threads, isa, skipped)
        _engine_paths(paths, model, insp.spec, threads, folder, skipped)
    except BaseException:
        for p in paths:
            p.close()
        raise
    return paths


def _direct_variants(
    paths: list[PeerPath], model: Path, threads: int, isa: str, skipped: list[dict[str, str]]
) -> None:
    """The direct runner at the lower kernel levels (f32) and in bf16 behind the guard."""
    from pyinspect import Inspector
    from pyinspect.runners.student import StudentRunner, kernel_isas

    for level in kernel_isas():
        if level != isa:
            runner = StudentRunner(model, threads=threads, isa=level)
            key = f"{DIRECT}-{level}"
            paths.append(
                PeerPath(key, DIRECT, f"{level} kernels", "f32", runner.inspect, runner.close)
            )
    bf16 = Inspector(model, threads=threads, threshold="argmax", precision="bf16")
    report = bf16.precision_report
    if bf16.precision != "bf16":
        bf16.close()
        why = report.headline() if report is not None else "the guard could not run (see the log)"
        skipped.append({"path": "direct bf16", "reason": f"not accepted: {why}"})
        return
    guard = f"bf16 (guard: {report.identical}/{report.frames} verdicts identical)"
    paths.append(PeerPath(f"{DIRECT}-bf16", DIRECT, "bf16 kernels", guard, bf16.run, bf16.close))


def _engine_paths(
    paths: list[PeerPath],
    model: Path,
    spec: Any,
    threads: int,
    folder: Path,
    skipped: list[dict[str, str]],
) -> None:
    """Append the (a) and (b) paths of both engines to ``paths``."""
    import onnx

    from pyinspect.export.fullframe import FRAME_INPUT, frame_grid, fullframe_graph

    boxes = frame_grid(spec, FRAME, FRAME).boxes
    tile, vote = numpy_tiler(spec, boxes), numpy_vote(spec)
    full = folder / "fullframe.onnx"
    onnx.save(fullframe_graph(model, spec, height=FRAME, width=FRAME), full)
    models: dict[str, dict[str, Path]] = {"tiled": {"f32": model}, "fullframe": {"f32": full}}
    if importlib.util.find_spec("onnxruntime.quantization") is None:
        skipped.append({"path": "int8 (both engines)", "reason": "no onnxruntime.quantization"})
    else:
        common.log("peers: quantizing the per-patch and full-frame models to int8 (QDQ) ...")
        calibration = dagm_like_frames(CALIBRATION_FRAMES, seed=100)
        feeds = {
            "tiled": [{spec.input.name: tile(f)} for f in calibration],
            "fullframe": [{FRAME_INPUT: f} for f in calibration],
        }
        for group, files in models.items():
            try:
                with _quiet():
                    files["int8"] = quantize_int8(
                        files["f32"], folder / f"{group}_int8.onnx", feeds[group]
                    )
            except Exception as exc:  # the quantizer's own errors: say so, time the rest
                skipped.append({"path": f"{group} int8", "reason": f"quantization failed: {exc}"})

    def add(group: str, engine: str, precision: str, make: Callable[..., Any], *args: Any) -> None:
        key = f"{group}-{ENGINE_KEYS[engine]}-{precision.split()[0]}"
        try:
            run = make(*args, threads)
        except Exception as exc:  # an engine that refuses a model here: a skipped row
            skipped.append({"path": f"{group} {engine} {precision}", "reason": str(exc)})
            return
        if group == "tiled":
            paths.append(PeerPath(key, group, engine, precision, lambda f: vote(run(tile(f)))))
        else:
            paths.append(PeerPath(key, group, engine, precision, lambda f: vote(run(f))))

    for group, files in models.items():
        for precision, path in files.items():
            label = "int8 (static QDQ)" if precision == "int8" else precision
            add(group, "ONNX Runtime", label, ort_runner, path)
    caps, why = openvino_capabilities()
    if why:
        skipped.append({"path": "OpenVINO (every row)", "reason": why})
        return
    precisions = ["f32"]
    if "BF16" in caps:
        precisions.append("bf16")
    else:
        flags = " ".join(common.cpu_flags()) or "none"
        skipped.append(
            {
                "path": "OpenVINO bf16",
                "reason": "OpenVINO offers f32 only here: its CPU plugin has no BF16 capability"
                f" (it needs avx512_bf16 or AMX; this CPU's SIMD flags: {flags})",
            }
        )
    shape = [len(boxes), spec.input.channels, spec.patch, spec.patch]
    for group, files in models.items():
        batch = shape if group == "tiled" else None
        for precision in precisions:
            add(group, "OpenVINO", precision, openvino_runner, files["f32"], precision, batch)
        if "int8" in files and "INT8" in caps:
            add(
                group,
                "OpenVINO",
                "int8 (the QDQ model)",
                openvino_runner,
                files["int8"],
                "f32",
                batch,
            )


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """ONNX Runtime's quantizer logs advice on the root logger; keep stderr to progress."""
    log = logging.getLogger()
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


# ---- timing -------------------------------------------------------------------------------------
def run_peers(model: Path, threads: int, rounds: int, iters: int) -> dict[str, Any]:
    """Time every path in interleaved rounds on the same frames; medians over rounds of the
    per-round medians, ratios against the direct path, verdict agreement and the goals."""
    skipped: list[dict[str, str]] = []
    frames = dagm_like_frames(TIMED_FRAMES, seed=1)
    with tempfile.TemporaryDirectory() as tmp:
        paths = build_paths(model, threads, Path(tmp), skipped)
        try:
            timed = {p.key: (None, p.run) for p in paths}
            per_round: dict[str, list[float]] = {p.key: [] for p in paths}
            all_ms: dict[str, list[float]] = {p.key: [] for p in paths}
            native: list[float] = []
            direct_wall: list[float] = []
            for key, calls in common.interleaved_rounds(timed, frames, rounds, iters):
                ms = [c.ms for c in calls]
                per_round[key].append(float(np.median(ms)))
                all_ms[key] += ms
                if key == DIRECT:
                    direct_wall += ms
                    native += [c.result.timings.total_ms for c in calls]
            want = [_verdict(paths[0].run(f)) for f in frames]
            agree = {
                p.key: sum(_verdict(p.run(f)) == w for f, w in zip(frames, want, strict=True))
                for p in paths
            }
        finally:
            for p in paths:
                p.close()
    direct_ms = float(np.median(per_round[DIRECT]))
    rows = []
    for p in paths:
        med = float(np.median(per_round[p.key]))
        rows.append(
            {
                "key": p.key,
                "group": p.group,
                "engine": p.engine,
                "precision": p.precision,
                "title": p.title,
                "median_ms": med,
                "p90_ms": float(np.percentile(all_ms[p.key], 90)),
                "best_round_ms": float(min(per_round[p.key])),
                "vs_direct": med / direct_ms,
                "verdicts_equal": int(agree[p.key]),
            }
        )
    fastest = min((r for r in rows if r["group"] == DIRECT), key=lambda r: r["median_ms"])
    goals = {}
    for group, goal in (("tiled", GOAL_TILED), ("fullframe", GOAL_FULLFRAME)):
        best = min(
            (r for r in rows if r["group"] == group), key=lambda r: r["median_ms"], default=None
        )
        ratio_fastest = best["median_ms"] / fastest["median_ms"] if best else None
        goals[group] = {
            "goal": goal,
            "best": best["key"] if best else None,
            "best_title": best["title"] if best else None,
            "ratio": best["vs_direct"] if best else None,
            "met": bool(best and best["vs_direct"] >= goal),
            "fastest_direct": fastest["key"],
            "fastest_direct_title": fastest["title"],
            "ratio_fastest_direct": ratio_fastest,
            "met_fastest_direct": bool(ratio_fastest and ratio_fastest >= goal),
        }
    return {
        "model": common.rel(model),
        "threads": threads,
        "rounds": rounds,
        "iters": iters,
        "frames": len(frames),
        "rows": rows,
        "goals": goals,
        "direct_python_ms": float(np.median(direct_wall) - np.median(native)),
        "direct_python_ms_per_frame_median": float(
            np.median(np.array(direct_wall) - np.array(native))
        ),
        "skipped": skipped,
    }


def _verdict(value: Any) -> Verdict:
    if isinstance(value, tuple):
        return value
    return int(value.texture), bool(value.defective)


def markdown(peers: dict[str, Any]) -> list[str]:
    """The report's peers section."""
    out = [
        "",
        f"## Peers: the direct path against the engines (same run, same {peers['frames']} frames,"
        " interleaved)",
        "",
        f"`{peers['model']}`, 512x512 gray frames (DAGM-like), {peers['threads']} threads, wall"
        " time;"
        f" medians over {peers['rounds']} interleaved rounds of {peers['iters']} frames (each the"
        " median of the round). Every path ends in a verdict; (a) and (b) vote in NumPy.",
        "",
        "| path | median ms | p90 | best round | vs direct | verdicts = direct |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    order = list(GROUPS)
    for r in sorted(peers["rows"], key=lambda r: order.index(r["group"])):
        out.append(
            f"| {r['title']} | {common.fmt_ms(r['median_ms'])} |"
            f" {common.fmt_ms(r['p90_ms'])} | {common.fmt_ms(r['best_round_ms'])} |"
            f" {r['vs_direct']:.2f}× | {r['verdicts_equal']}/{peers['frames']} |"
        )
    out.append("")
    for group, g in peers["goals"].items():
        if g["best"] is None:
            out.append(f"- not measured: {GROUPS[group]} (no path ran)")
            continue
        text = (
            f"direct path (f32) ≥ {g['goal']:g}× faster than the best of {GROUPS[group]}"
            f" ({g['best_title']}): {g['ratio']:.2f}×"
        )
        out.append(f"- {'met' if g['met'] else 'not met'}: {text}")
        if g.get("fastest_direct", DIRECT) != DIRECT:
            text = (
                f"fastest direct row ({g['fastest_direct_title']}) ≥ {g['goal']:g}× faster than"
                f" the same: {g['ratio_fastest_direct']:.2f}×"
            )
            out.append(f"- {'met' if g['met_fastest_direct'] else 'not met'}: {text}")
    out += [f"- skipped {s['path']}: {s['reason']}" for s in peers["skipped"]]
    return out
