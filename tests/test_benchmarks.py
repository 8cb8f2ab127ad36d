"""Smoke runs of benchmarks/latency.py, throughput.py, compare_base.py (its workers, on this
tree) and examples/camera_loop.py on tiny models with a handful of runs, plus the arithmetic
their reports rest on."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from modelzoo import TinyBundle, write_tiny

from pyinspect.backends.base import physical_cores, usable_cpus
from pyinspect.stream import default_reader_nice

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import common  # noqa: E402
import compare_base  # noqa: E402
import latency  # noqa: E402
import throughput  # noqa: E402


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[TinyBundle, TinyBundle]:
    folder = tmp_path_factory.mktemp("bench")
    return write_tiny(folder, "teacher.onnx"), write_tiny(folder, "student.onnx", channels=1)


# ---- arithmetic ----------------------------------------------------------------------------------
def test_stats_percentiles() -> None:
    s = latency.Stats.of(np.arange(1, 101, dtype=float))
    assert (s.runs, s.median, s.min, s.mean) == (100, 50.5, 1.0, 50.5)
    assert s.p90 == pytest.approx(90.1) and s.p99 == pytest.approx(99.01)


@pytest.mark.parametrize(
    ("est_ms", "role", "runs", "expected"),
    [
        (4.6, "student", None, 653),  # 3 s / 4.6 ms
        (100.0, "student", None, 200),  # the student's minimum
        (1240.0, "teacher", None, 10),  # the teacher's minimum
        (0.0, "student", None, latency.MAX_RUNS),
        (1240.0, "teacher", 3, 3),  # --runs wins
    ],
)
def test_plan_runs(est_ms: float, role: str, runs: int | None, expected: int) -> None:
    assert latency.plan_runs(est_ms, role, runs, 3.0) == expected


def _row(model: str, backend: str, kind: str, median: float) -> latency.Row:
    stats = latency.Stats(10, median, median, median, median, median)
    return latency.Row(model, backend, kind, 9, "cpu", "perf_counter", stats)


def test_summary_ratio_and_targets() -> None:
    rows = [
        _row("teacher", "onnxruntime", "infer", 1240.0),
        _row("student", "onnxruntime", "infer", 4.6),
        _row("student", "onnxruntime", "e2e", 5.0),
        _row("student", latency.NATIVE, "e2e", 4.9),
        _row("student", latency.STUDENT, "e2e", 2.0),
        _row("teacher", "openvino", "infer", 100.0),
        _row("student", "openvino", "infer", 4.0),
        _row("student", "openvino", "e2e", 5.0),
    ]
    s = latency.summarise(rows, ["onnxruntime", "openvino"])
    ort = s["speedup_by_backend"]["onnxruntime"]
    assert ort["speedup"] == pytest.approx(1240 / 4.6) and ort["meets_paper"]
    assert not s["speedup_by_backend"]["openvino"]["meets_paper"]  # 25x < 39.3x
    checks = {v["backend"]: v for v in s["e2e_over_pure"]}
    assert checks["onnxruntime"]["e2e_over_pure"] == pytest.approx(5.0 / 4.6)
    assert checks["onnxruntime"]["meets_target"]  # 1.087 <= 1.15
    assert not checks["openvino"]["meets_target"]  # 1.25
    assert s["best_student_e2e"]["backend"] == latency.STUDENT


def test_result_path_names_host_and_day() -> None:
    facts = {"host": "cam box/1", "date": "2026-11-25T16:00:00+00:00"}
    assert common.result_path("latency", facts).name == "latency-cam_box_1-2026-11-25.json"


def test_machine_facts_name_the_cpu_and_libraries() -> None:
    facts = common.machine_facts()
    assert facts["cpu"] and facts["physical_cores"] >= 1
    assert "onnxruntime" in facts["libraries"] and "numpy" in facts["libraries"]
    assert facts["cpu"] in common.describe(facts)


# ---- smoke runs ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("clock", "timer"), [("wall", "perf_counter"), ("cpu", "process_time")])
def test_latency_smoke(
    pair: tuple[TinyBundle, TinyBundle],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    clock: str,
    timer: str,
) -> None:
    teacher, student = pair
    out = tmp_path / "latency.json"
    models = ["--teacher", str(teacher.model_path), "--student", str(student.model_path)]
    argv = [*models, "--backend", "onnxruntime", "--runs", "3", "--threads", "1"]
    argv += ["--clock", clock, "--json", str(out)]
    assert latency.main(argv) == 0
    report = capsys.readouterr().out
    result = json.loads(out.read_text())
    kinds = {(r["model"], r["kind"], r["batch"]) for r in result["rows"]}
    for model in ("teacher", "student"):
        assert {(model, "infer", 9), (model, "infer", 1), (model, "e2e", 9)} <= kinds
    assert all(r["stats"]["runs"] == 3 and r["timer"] == timer for r in result["rows"])
    assert (result["clock"], result["threads"]) == (clock, 1)
    e2e = next(r for r in result["rows"] if r["kind"] == "e2e" and r["model"] == "student")
    assert set(e2e["stages"]) == {"tile_ms", "infer_ms", "vote_ms", "total_ms", "overhead_ms"}
    assert (e2e["stages"]["overhead_ms"] is None) == (clock == "cpu")  # strict JSON, no NaN
    assert "onnxruntime" in result["summary"]["speedup_by_backend"]
    assert result["machine"]["cpu"]
    assert out.with_suffix(".png").stat().st_size > 1000
    assert out.with_suffix(".md").read_text() == report.removesuffix("\n")
    assert "| Teacher VGG16, ms | 57.43 |" in report
    assert "| Student (4,8,16,4,4), ms | 1.46 |" in report
    assert "teacher/student on onnxruntime" in report


def test_latency_names_why_a_runner_row_is_skipped(
    pair: tuple[TinyBundle, TinyBundle], tmp_path: Path
) -> None:
    _, student = pair  # a tiny network, not the paper's student: the runner refuses it
    out = tmp_path / "latency.json"
    argv = ["--student", str(student.model_path), "--backend", latency.STUDENT, "--runs", "2"]
    assert latency.main([*argv, "--json", str(out), "--no-chart"]) == 0
    result = json.loads(out.read_text())
    assert result["rows"] == []
    (skip,) = result["skipped"]
    assert (skip["model"], skip["backend"]) == ("student", "student")
    assert "student runner" in skip["reason"]
    assert f"- skipped student on student: {skip['reason']}" in out.with_suffix(".md").read_text()


@pytest.mark.skipif(not common.SHIPPED.is_file(), reason="models/student.onnx is not checked out")
def test_latency_times_the_direct_student_runner(tmp_path: Path) -> None:
    out = tmp_path / "latency.json"
    argv = ["--student", str(common.SHIPPED), "--backend", latency.STUDENT, "--runs", "3"]
    assert latency.main([*argv, "--json", str(out), "--no-chart", "--threads", "1"]) == 0
    result = json.loads(out.read_text())
    reason = common.runner_unavailable(latency.STUDENT)
    if reason:  # this build or CPU has no direct student runner: the row says why
        assert result["skipped"] == [{"model": "student", "backend": "student", "reason": reason}]
        return
    (row,) = result["rows"]
    assert (row["backend"], row["kind"], row["stats"]["runs"]) == ("student", "e2e", 3)
    report = out.with_suffix(".md").read_text()
    assert "| direct student runner (C++) |" in report
    # the overhead column is wall time minus the native call's own timer
    g = row["stages"]
    assert g["total_ms"] == pytest.approx(g["infer_ms"] + g["vote_ms"], abs=0.02)
    assert g["overhead_ms"] == pytest.approx(row["stats"]["median"] - g["total_ms"])
    (side,) = result["summary"]["python_side"]
    assert side["python_ms"] == g["overhead_ms"]
    assert "Python side of `Inspector.run` on the direct student runner" in report


def test_python_side_target_is_checked_per_direct_row() -> None:
    fast = _row("student", latency.STUDENT, "e2e", 1.0)
    fast.stages = {"total_ms": 0.98, "overhead_ms": 0.02}
    slow = _row("shipped", latency.STUDENT, "e2e", 1.0)
    slow.stages = {"total_ms": 0.9, "overhead_ms": 0.1}
    sides = latency.summarise([fast, slow], [])["python_side"]
    assert [(v["model"], v["meets_target"]) for v in sides] == [
        ("student", True),
        ("shipped", False),
    ]


@pytest.mark.skipif(
    bool(common.runner_unavailable(latency.STUDENT)),
    reason=f"no direct student runner here: {common.runner_unavailable(latency.STUDENT)}",
)
def test_peers_table_times_every_engine_path(tmp_path: Path) -> None:
    import importlib.util

    import peers
    from studentzoo import student_onnx

    model = tmp_path / "student.onnx"
    student_onnx(model, hidden=32, seed=3)
    out = tmp_path / "latency.json"
    argv = ["--peers-only", "--peer-model", str(model), "--peer-rounds", "1"]
    argv += ["--peer-iters", "2", "--threads", "1", "--json", str(out)]
    assert latency.main(argv) == 0
    result = json.loads(out.read_text())
    assert result["rows"] == [] and not out.with_suffix(".png").exists()
    got = result["peers"]
    rows = {r["key"]: r for r in got["rows"]}
    want = {"direct", "tiled-ort-f32", "fullframe-ort-f32"}
    if importlib.util.find_spec("onnxruntime.quantization"):
        want |= {"tiled-ort-int8", "fullframe-ort-int8"}
    caps, _ = peers.openvino_capabilities()
    if caps:
        want |= {"tiled-openvino-f32", "fullframe-openvino-f32"}
        if "BF16" in caps:
            want |= {"tiled-openvino-bf16", "fullframe-openvino-bf16"}
        else:
            assert any("f32 only" in s["reason"] for s in got["skipped"])
    from pyinspect.runners.student import kernel_isas, kernel_precisions

    if len(kernel_isas()) > 1:  # the lower kernel level beside the one auto picks
        want |= {f"direct-{kernel_isas()[0]}"}
    if "bf16" in kernel_precisions():  # timed when the guard accepts it, else skipped saying why
        assert "direct-bf16" in rows or any(s["path"] == "direct bf16" for s in got["skipped"])
    assert want <= set(rows)
    assert rows["direct"]["vs_direct"] == 1.0
    assert all(
        r["verdicts_equal"] == got["frames"]
        for r in rows.values()
        if r["group"] == "direct" and r["precision"] == "f32"
    )  # every kernel level: the same verdicts
    # f32 on either engine and layout gives the direct path's verdicts
    for key in ("tiled-ort-f32", "fullframe-ort-f32"):
        assert rows[key]["verdicts_equal"] == got["frames"]
        assert rows[key]["vs_direct"] == pytest.approx(
            rows[key]["median_ms"] / rows["direct"]["median_ms"]
        )
    best = min((r for r in got["rows"] if r["group"] == "tiled"), key=lambda r: r["median_ms"])
    assert got["goals"]["tiled"]["best"] == best["key"]
    assert got["goals"]["tiled"]["met"] == (best["vs_direct"] >= peers.GOAL_TILED)
    report = out.with_suffix(".md").read_text()
    assert "## Peers: the direct path against the engines" in report
    assert "| NumPy tiling + ONNX Runtime f32, batch 9 |" in report
    assert "| full-frame graph on ONNX Runtime f32 |" in report
    assert "faster than the best of (a) NumPy tiling" in report
    assert "faster than the best of (b) full-frame" in report


def test_peers_refuse_a_missing_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.onnx"
    assert latency.main(["--peers-only", "--peer-model", str(missing)]) == 2
    assert f"--peers: no student model at {missing}" in capsys.readouterr().err


def test_latency_refuses_an_unknown_backend(pair, capsys: pytest.CaptureFixture[str]) -> None:
    teacher, _ = pair
    assert latency.main(["--teacher", str(teacher.model_path), "--backend", "onnxrt"]) == 2
    assert "unknown backend(s) ['onnxrt']" in capsys.readouterr().err


def test_throughput_smoke(
    pair: tuple[TinyBundle, TinyBundle], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, student = pair
    out = tmp_path / "throughput.json"
    argv = ["--model", str(student.model_path), "--frames", "6", "--repeats", "1"]
    argv += ["--json", str(out)]
    assert throughput.main(argv) == 0
    result = json.loads(out.read_text())
    (row,) = result["rows"]
    assert set(row["fps"]) == {"decode", "inspect", "plain", "stream"}
    assert all(v > 0 for v in row["fps"].values())
    assert result["video"]["frames"] == 6
    assert " stream / slowest | stream / plain |" in capsys.readouterr().out
    assert (row["input"], row["runner"]) == ("BGR", "backend")
    gray_out = tmp_path / "gray.json"
    assert throughput.main([*argv[:-1], str(gray_out), "--gray"]) == 0
    (row,) = json.loads(gray_out.read_text())["rows"]
    assert row["input"] == "gray" and all(v > 0 for v in row["fps"].values())
    spin_out = tmp_path / "spin.json"
    assert throughput.main([*argv[:-1], str(spin_out), "--spin", "on", "--spin", "off"]) == 0
    rows = json.loads(spin_out.read_text())["rows"]
    assert [r["spin"] for r in rows] == [True, False]
    assert "(backend, spin off" in capsys.readouterr().out
    nice_out = tmp_path / "nice.json"
    argv_nice = [
        *argv[:-1],
        str(nice_out),
        "--spin",
        "off",
        "--reader-nice",
        "0",
        "--reader-nice",
        "3",
        "--reader-nice",
        "auto",
    ]
    assert throughput.main(argv_nice) == 0
    rows = json.loads(nice_out.read_text())["rows"]
    # auto: the backend's default pool (physical cores, spinning off) against this machine's CPUs
    auto = default_reader_nice(physical_cores(), False, usable_cpus())
    assert [r["reader_nice"] for r in rows] == [0, 3, auto]
    text = capsys.readouterr().out
    assert "(backend, spin off) |" in text and "(backend, spin off, reader nice 3) |" in text


def test_throughput_refuses_a_bad_reader_nice(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        throughput.parse_args(["--reader-nice", "20"])
    assert "--reader-nice must be auto or 0..19, got '20'" in capsys.readouterr().err


def test_dagm_like_video_round_trips(tmp_path: Path) -> None:
    frames = throughput.dagm_like_frames(3)
    assert len({f.tobytes() for f in frames}) == 3
    video = throughput.write_video(tmp_path / "v.avi", frames)
    decoded = throughput.decode_all(video)
    assert len(decoded) == 3 and decoded[0].shape == (512, 512, 3)
    gray = cv2.cvtColor(decoded[0], cv2.COLOR_BGR2GRAY).astype(int)
    assert np.abs(gray - frames[0]).mean() < 10  # MJPG is lossy, not random


@pytest.mark.parametrize(
    "script",
    [
        "benchmarks/latency.py",
        "benchmarks/throughput.py",
        "benchmarks/compare_base.py",
        "benchmarks/fast_cpu.py",
        "benchmarks/precision_guard.py",
        "benchmarks/soak.py",
    ],
)
def test_scripts_run_as_scripts(script: str) -> None:
    proc = subprocess.run(
        [sys.executable, script, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "--json" in proc.stdout or "--out" in proc.stdout


def test_camera_loop_example_on_a_folder_and_a_video(
    pair: tuple[TinyBundle, TinyBundle], tmp_path: Path
) -> None:
    _, student = pair
    frames = throughput.dagm_like_frames(4)
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, f in enumerate(frames):
        cv2.imwrite(str(folder / f"{i}.png"), f)
    (folder / "9.png").write_bytes(b"broken")
    video = throughput.write_video(tmp_path / "v.avi", frames)
    for source, n, errors in ((folder, 5, 1), (video, 4, 0)):
        proc = subprocess.run(
            [
                sys.executable,
                "examples/camera_loop.py",
                str(source),
                "--model",
                str(student.model_path),
                "--threshold",
                "0",
                "--save",
                str(tmp_path / "out"),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        assert f"{n} frames in" in proc.stderr and f"{errors} errors" in proc.stderr
    assert len(list((tmp_path / "out").glob("*.png"))) == 4  # threshold 0: every frame defective


# ---- compare_base ----------------------------------------------------------------------------
def test_compare_blocks_alternate_which_side_goes_first() -> None:
    assert compare_base.block_order(3) == [
        ("before", "after"),
        ("after", "before"),
        ("before", "after"),
    ]


def test_compare_summary_pools_frames_and_takes_ratios() -> None:
    times = {
        "before": {"student": [[2.0, 2.0, 2.0], [4.0]], "onnxruntime": [[10.0], [10.0]]},
        "after": {"student": [[2.0, 2.08, 2.08], [4.0]], "onnxruntime": [[11.0], [12.0]]},
    }
    s = compare_base.summarise(times)
    student, ort = s["student"], s["onnxruntime"]
    assert (student["before"]["median_ms"], student["after"]["median_ms"]) == (2.0, 2.08)
    assert student["before"]["block_medians_ms"] == [2.0, 4.0]
    assert student["after_over_before"] == pytest.approx(1.04)
    assert student["after_over_before_blocks"] == pytest.approx(3.04 / 3.0)
    assert student["within_tolerance"]
    assert ort["after_over_before"] == pytest.approx(1.15) and not ort["within_tolerance"]


def test_compare_needs_a_base(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        compare_base.parse_args([])
    assert "--base REV is required" in capsys.readouterr().err


@pytest.mark.skipif(not common.SHIPPED.is_file(), reason="models/student.onnx is not checked out")
def test_compare_workers_interleave_blocks_on_this_tree() -> None:
    reason = common.runner_unavailable("student")
    if reason:
        pytest.skip(f"no direct student runner here: {reason}")
    workers = {}
    try:
        for side in compare_base.SIDES:  # this tree on both sides: no base build in a test
            workers[side] = compare_base.Worker(side, None, common.SHIPPED, 1)
        lines: list[str] = []
        times = compare_base.interleave(workers, 2, 3, 1, lines.append)
    finally:
        for w in workers.values():
            w.close()
    assert workers["after"].info["student"] == "onnxruntime backend, direct student runner"
    assert len(lines) == 2 and lines[1].startswith("block 2/2 (after before): ")
    for side in compare_base.SIDES:
        for path in compare_base.PATHS:
            assert [len(b) for b in times[side][path]] == [3, 3]
            assert all(v > 0 for b in times[side][path] for v in b)
    result = {
        "machine": common.machine_facts(),
        "command": "python benchmarks/compare_base.py --base HEAD",
        "model": "models/student.onnx",
        "blocks": 2,
        "frames": 3,
        "warmup": 1,
        "threads": 1,
        "paths": {p: workers["after"].info[p] for p in compare_base.PATHS},
        "base": {"commit": "0" * 40, "subject": "s", "site": "site"},
        "current": {"describe": "HEAD", "pyinspect": "pyinspect"},
        "summary": compare_base.summarise(times),
    }
    text = compare_base.markdown(result)
    assert "| student (onnxruntime backend, direct student runner) |" in text
    assert "- onnxruntime, after: " in text and common.cpu_model() in text
