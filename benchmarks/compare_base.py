"""Latency of this tree against a base commit, in interleaved blocks on one machine.

Two paths on ``models/student.onnx`` and one gray 512x512 frame, ``Inspector.run`` per frame:

* ``student``: the automatic choice (``Inspector(model)``), which must be the direct student
  runner (the base commit's names: ``engine="student"``);
* ``onnxruntime``: ``Inspector(model, "onnxruntime", runner="backend")`` (base:
  ``engine="backend"``).

The base commit is checked out into a temporary ``git worktree`` and built there with this venv's
pip, into its own folder (``pip install --no-build-isolation --no-deps --target <work>/base-site
<worktree>``, CMake's build folder under ``<work>`` too): its own ``pyinspect._core`` and, since
OpenVINO is installed in the venv, its ``_fastcpu``; ``.venv`` is not touched. Two pyinspect
versions cannot share one interpreter, so two worker processes each import one: the base from its
folder, this tree from the venv (the editable install of this checkout, as ``make install`` built
it; ``--build-current`` builds the working tree into ``<work>`` the same way instead). The parent
asks them in turn for blocks of frames, in the order A B B A A B ... (both paths per block), so a
change of machine load hits both sides alike; only one worker computes at a time. It reports the
median per path and side over all timed frames, the median of the block medians, the after/before
ratios and whether each is no more than 5 % slower than the base, with the CPU, and writes
``benchmarks/results/compare-base-<host>-<date>.json`` and ``.md`` (or ``--json PATH``).

    .venv/bin/python benchmarks/compare_base.py --base f0d703a              # 6 blocks x 200 frames
    .venv/bin/python benchmarks/compare_base.py --base f0d703a --blocks 2 --frames 20  # smoke
    .venv/bin/python benchmarks/compare_base.py --base f0d703a --work /tmp/pyinspect-base
        # keeps the base build in /tmp/pyinspect-base and reuses it on the next run

Run it on a quiet machine: the ratio of two medians is only as steady as the load.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # common, when imported from tests
import common

MODEL = common.ROOT / "models" / "student.onnx"
PATHS = ("student", "onnxruntime")
SIDES = ("before", "after")  # the base commit, this tree
TOLERANCE = 0.05  # after may be at most 5 % slower than before (faster is fine)
SCRIPT = Path(__file__).resolve()


# ---- the worker: one pyinspect, two paths, blocks on request ------------------------------------
def use_site(site: Path) -> None:
    """Import pyinspect from ``site`` only: put it first on ``sys.path`` and drop the editable
    install's import hook (scikit-build-core's finder, which maps ``pyinspect`` to this
    checkout ahead of ``sys.path``)."""
    sys.path.insert(0, str(site))
    sys.meta_path[:] = [f for f in sys.meta_path if "ScikitBuild" not in type(f).__name__]


def open_paths(model: Path, threads: int | None) -> tuple[dict[str, Any], dict[str, str]]:
    """The two Inspectors, and what each runs on (checked: ``student`` must be the direct
    student runner, else a ``RuntimeError`` saying why not)."""
    from pyinspect import Inspector

    if "runner" in inspect.signature(Inspector).parameters:
        student = Inspector(model, threads=threads)
        ort = Inspector(model, "onnxruntime", runner="backend", threads=threads)
        used, note = student.runner, student.runner_note
    else:  # the base commit's API: the same two choices under their names there
        student = Inspector(model, threads=threads, engine="student")
        ort = Inspector(model, "onnxruntime", threads=threads, engine="backend")
        used = "student" if student.engine == "student-engine" else student.engine
        note = student.engine_note
    if used != "student":
        msg = f"{model}: the automatic choice is {used!r}, not the direct student runner: {note}"
        raise RuntimeError(msg)
    return {"student": student, "onnxruntime": ort}, {
        "student": f"{student.backend_name} backend, direct student runner",
        "onnxruntime": f"{ort.backend_name} backend",
    }


def time_block(insp: Any, frame: np.ndarray, frames: int, warmup: int) -> list[float]:
    """Wall milliseconds of ``frames`` calls of ``insp.run(frame)`` after ``warmup`` untimed."""
    for _ in range(warmup):
        insp.run(frame)
    out = []
    for _ in range(frames):
        t0 = time.perf_counter_ns()
        insp.run(frame)
        out.append((time.perf_counter_ns() - t0) * 1e-6)
    return out


def worker(site: Path | None, model: Path, threads: int | None) -> int:
    """Answer JSON lines on stdin (``{"path", "frames", "warmup"}``; ``{}`` ends) with the
    block's times on stdout; the first line out says what was loaded."""
    if site is not None:
        use_site(site)
    import pyinspect
    from pyinspect import _core

    out = sys.stdout
    sys.stdout = sys.stderr  # anything pyinspect prints must not corrupt the protocol
    where = Path(pyinspect.__file__).resolve()
    if site is not None and not where.is_relative_to(site.resolve()):
        msg = f"pyinspect came from {where}, not from {site}"
        raise RuntimeError(msg)
    paths, used = open_paths(model, threads)
    frame = common.bench_frame()
    info = {"pyinspect": str(where.parent), "core": str(Path(_core.__file__).resolve()), **used}
    _send(out, {"ready": True, "info": info})
    for line in sys.stdin:
        ask = json.loads(line)
        if not ask:
            break
        ms = time_block(paths[ask["path"]], frame, int(ask["frames"]), int(ask["warmup"]))
        _send(out, {"ms": ms})
    for insp in paths.values():
        insp.close()
    return 0


def _send(out: IO[str], message: dict[str, Any]) -> None:
    out.write(json.dumps(message) + "\n")
    out.flush()


class Worker:
    """A worker process seen from the parent."""

    def __init__(self, side: str, site: Path | None, model: Path, threads: int | None) -> None:
        cmd = [sys.executable, str(SCRIPT), "--worker", "--model", str(model)]
        if site is not None:
            cmd += ["--site", str(site)]
        if threads is not None:
            cmd += ["--threads", str(threads)]
        self.side = side
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=common.ROOT
        )
        try:
            self.info: dict[str, str] = self._receive()["info"]
        except BaseException:
            self.close()
            raise

    def block(self, path: str, frames: int, warmup: int) -> list[float]:
        ask = json.dumps({"path": path, "frames": frames, "warmup": warmup})
        stdin = self.proc.stdin
        if stdin is None or self.proc.poll() is not None:
            msg = f"the {self.side} worker has stopped"
            raise RuntimeError(msg)
        stdin.write(ask + "\n")
        stdin.flush()
        return list(self._receive()["ms"])

    def close(self) -> None:
        """Ask the worker to stop, wait for it, and close both pipes (idempotent)."""
        stdin, stdout = self.proc.stdin, self.proc.stdout
        if stdin is not None and not stdin.closed:
            if self.proc.poll() is None:
                stdin.write("{}\n")
            stdin.close()
        self.proc.wait(timeout=60)
        if stdout is not None:
            stdout.close()

    def _receive(self) -> dict[str, Any]:
        line = self.proc.stdout.readline() if self.proc.stdout is not None else ""
        if not line:
            rc = self.proc.wait(timeout=60)
            msg = f"the {self.side} worker stopped (exit status {rc}); its error is above"
            raise RuntimeError(msg)
        return json.loads(line)


# ---- building a commit ------------------------------------------------------------------------
def git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(common.ROOT), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def pip_install(source: Path, site: Path, build_dir: Path) -> None:
    """Build ``source`` with this venv's pip into ``site`` (CMake's folder: ``build_dir``)."""
    pip = Path(sys.executable).with_name("pip")
    cmd = [str(pip), "install", "--quiet", "--no-build-isolation", "--no-deps"]
    cmd += ["--target", str(site), "--config-settings", f"build-dir={build_dir}", str(source)]
    common.log(f"$ {' '.join(cmd)}")
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-40:])
        msg = f"building {source} failed (exit status {proc.returncode}):\n{tail}"
        raise RuntimeError(msg)
    common.log(f"  built in {time.perf_counter() - t0:.0f} s")


def build_base(commit: str, work: Path) -> Path:
    """``<work>/base-site`` holding the base commit's pyinspect, built unless it already holds
    that commit (``<work>/base-site/.commit``)."""
    site = work / "base-site"
    stamp = site / ".commit"
    if stamp.is_file() and stamp.read_text().strip() == commit:
        common.log(f"reusing the build of {commit[:12]} in {site}")
        return site
    shutil.rmtree(site, ignore_errors=True)
    tree = work / "base-worktree"
    git("worktree", "add", "--detach", "--force", str(tree), commit)
    try:
        pip_install(tree, site, work / "base-build")
    finally:
        git("worktree", "remove", "--force", str(tree))
    stamp.write_text(commit + "\n")
    return site


@contextmanager
def work_dir(path: Path | None) -> Iterator[Path]:
    """``path`` (kept), or a temporary folder removed at the end."""
    if path is not None:
        path.mkdir(parents=True, exist_ok=True)
        yield path.resolve()
        return
    with tempfile.TemporaryDirectory(prefix="pyinspect-compare-") as tmp:
        yield Path(tmp)


# ---- the comparison ---------------------------------------------------------------------------
def block_order(blocks: int) -> list[tuple[str, ...]]:
    """A B, B A, A B, ...: each side goes first in half the blocks."""
    return [SIDES if k % 2 == 0 else SIDES[::-1] for k in range(blocks)]


def interleave(
    workers: dict[str, Any], blocks: int, frames: int, warmup: int, progress: Callable[[str], None]
) -> dict[str, dict[str, list[list[float]]]]:
    """``times[side][path]``: one list of milliseconds per block."""
    times: dict[str, dict[str, list[list[float]]]] = {s: {p: [] for p in PATHS} for s in SIDES}
    for k, order in enumerate(block_order(blocks)):
        for side in order:
            for path in PATHS:
                times[side][path].append(workers[side].block(path, frames, warmup))
        medians = ", ".join(
            f"{s} {p} {np.median(times[s][p][-1]):.3f}" for s in SIDES for p in PATHS
        )
        progress(f"block {k + 1}/{blocks} ({' '.join(order)}): {medians} ms")
    return times


def summarise(times: dict[str, dict[str, list[list[float]]]]) -> dict[str, Any]:
    """Per path: medians of each side (all frames, and of the block medians), after/before."""
    out: dict[str, Any] = {}
    for path in PATHS:
        row: dict[str, Any] = {}
        for side in SIDES:
            blocks = times[side][path]
            pooled = np.concatenate([np.asarray(b, np.float64) for b in blocks])
            row[side] = {
                "median_ms": float(np.median(pooled)),
                "p90_ms": float(np.percentile(pooled, 90)),
                "block_medians_ms": [float(np.median(b)) for b in blocks],
                "median_of_blocks_ms": float(np.median([np.median(b) for b in blocks])),
                "frames": int(pooled.size),
            }
        ratio = row["after"]["median_ms"] / row["before"]["median_ms"]
        row["after_over_before"] = ratio
        row["after_over_before_blocks"] = (
            row["after"]["median_of_blocks_ms"] / row["before"]["median_of_blocks_ms"]
        )
        row["within_tolerance"] = ratio <= 1.0 + TOLERANCE
        out[path] = row
    return out


def markdown(result: dict[str, Any]) -> str:
    base, cur = result["base"], result["current"]
    lines = [
        f"# Latency before/after: {base['commit'][:12]} vs this tree"
        f" ({result['machine']['host']}, {result['machine']['date']})",
        "",
        common.describe(result["machine"]),
        "",
        f"Before: `{base['commit'][:12]}` ({base['subject']}), built from a git worktree"
        f" into `{base['site']}`. After: {cur['describe']}, pyinspect from"
        f" `{cur['pyinspect']}`. Model `{result['model']}`, one gray 512x512 frame,"
        f" `Inspector.run`; {result['blocks']} interleaved blocks of {result['frames']} timed"
        f" frames per path and side (after {result['warmup']} untimed), threads:"
        f" {result['threads'] or 'physical cores'}.",
        "",
        "| path | before, median ms | after, median ms | after / before |"
        " after / before, block medians | at most 5 % slower |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for path, r in result["summary"].items():
        lines.append(
            f"| {path} ({result['paths'][path]}) | {r['before']['median_ms']:.3f} |"
            f" {r['after']['median_ms']:.3f} | {r['after_over_before']:.3f} |"
            f" {r['after_over_before_blocks']:.3f} | {'yes' if r['within_tolerance'] else 'NO'} |"
        )
    lines += ["", "Block medians (ms):", ""]
    for path, r in result["summary"].items():
        for side in SIDES:
            blocks = ", ".join(f"{v:.3f}" for v in r[side]["block_medians_ms"])
            lines.append(f"- {path}, {side}: {blocks}")
    lines += ["", f"Command: `{result['command']}`"]
    return "\n".join(lines) + "\n"


def compare(args: argparse.Namespace, argv: list[str] | None) -> dict[str, Any]:
    commit = git("rev-parse", "--verify", f"{args.base}^{{commit}}")
    subject = git("log", "-1", "--format=%s", commit)
    dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    describe = git("rev-parse", "--short=12", "HEAD") + (" + uncommitted changes" if dirty else "")
    facts = common.machine_facts()
    with work_dir(args.work) as work:
        base_site = build_base(commit, work)
        current_site = None
        if args.build_current:
            current_site = work / "current-site"
            shutil.rmtree(current_site, ignore_errors=True)
            pip_install(common.ROOT, current_site, work / "current-build")
        workers: dict[str, Worker] = {}
        try:
            workers["before"] = Worker("before", base_site, args.model, args.threads)
            workers["after"] = Worker("after", current_site, args.model, args.threads)
            for side, w in workers.items():
                common.log(f"{side}: {w.info}")
            times = interleave(workers, args.blocks, args.frames, args.warmup, common.log)
        finally:
            for w in workers.values():
                w.close()
    before, after = workers["before"].info, workers["after"].info
    return {
        "machine": common.finish(facts),
        "command": common.command_line("benchmarks/compare_base.py", argv),
        "model": common.rel(args.model),
        "blocks": args.blocks,
        "frames": args.frames,
        "warmup": args.warmup,
        "threads": args.threads,
        "paths": {p: after[p] for p in PATHS},
        "base": {"commit": commit, "subject": subject, "site": str(base_site), **before},
        "current": {"describe": describe, "built": bool(args.build_current), **after},
        "summary": summarise(times),
        "times_ms": times,
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = common.arg_parser(__doc__)
    ap.add_argument("--base", metavar="REV", help="the commit to compare against (any revision)")
    ap.add_argument("--blocks", type=int, default=6, help="blocks per side (default 6)")
    ap.add_argument(
        "--frames", type=int, default=200, help="timed frames per block and path (default 200)"
    )
    ap.add_argument(
        "--warmup", type=int, default=10, help="untimed frames before each block (default 10)"
    )
    ap.add_argument("--threads", type=int, help="compute threads (default: physical cores)")
    ap.add_argument("--model", type=Path, default=MODEL, help="default models/student.onnx")
    ap.add_argument(
        "--work",
        type=Path,
        help="keep the builds here and reuse the base's (default: a temporary folder)",
    )
    ap.add_argument(
        "--build-current",
        action="store_true",
        help="build this working tree into --work as well, instead of the venv's install",
    )
    ap.add_argument(
        "--json",
        type=Path,
        help="results file (default benchmarks/results/compare-base-<host>-<date>.json)",
    )
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--site", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if not args.worker and not args.base:
        ap.error("--base REV is required")
    for name in ("blocks", "frames"):
        if getattr(args, name) < 1:
            ap.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.warmup < 0:
        ap.error(f"--warmup must be >= 0, got {args.warmup}")
    args.model = args.model.resolve()
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        return worker(args.site, args.model, args.threads)
    if not args.model.is_file():
        common.log(f"error: {args.model} not found")
        return 2
    os.environ.setdefault("CMAKE_BUILD_PARALLEL_LEVEL", str(os.cpu_count() or 1))
    result = compare(args, argv)
    path = args.json or common.result_path("compare-base", result["machine"])
    common.write_results(result, path, markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
