"""Inspect a camera, a video file or a folder of images with ``Inspector.stream``.

    python examples/camera_loop.py 0                          # webcam 0
    python examples/camera_loop.py line.mp4 --save defects/   # a video; keep annotated defects
    python examples/camera_loop.py data/synth-dagm/Class1 --model models/student.onnx

``stream`` decodes frame n+1 on a worker thread while frame n is inferred, yields results in
order, and reports a bad frame (a dropped camera read, an unreadable file) as a result with
``error`` set instead of stopping. Ctrl-C, or ``--max-frames``, ends the loop; leaving the
``for`` loop stops the worker threads.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from pyinspect import InspectionResult, Inspector, PyInspectError

IMAGE_SUFFIXES = {".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff", ".pgm", ".ppm"}


def open_source(source: str) -> tuple[Any, str]:
    """A webcam index, a video file or a folder -> (what ``stream`` takes, a description)."""
    if source.isdigit():
        return _opened(cv2.VideoCapture(int(source)), source), f"camera {source}"
    path = Path(source)
    if path.is_dir():
        images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            msg = f"{path}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})"
            raise SystemExit(msg)
        return images, f"{len(images)} images in {path}"
    if path.is_file():
        return _opened(cv2.VideoCapture(str(path)), source), f"video {path}"
    msg = f"{source}: not a camera index, a video file or a folder"
    raise SystemExit(msg)


def _opened(cap: Any, source: str) -> Any:
    if not cap.isOpened():
        msg = f"{source}: OpenCV cannot open it (no such camera, or a format it does not read)"
        raise SystemExit(msg)
    return cap


def annotate(frame: np.ndarray, result: InspectionResult) -> np.ndarray:
    """The frame in BGR with defective patches boxed in red and the verdict written on top."""
    img = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR) if frame.ndim == 2 else frame[..., :3].copy()
    for i in result.defective_patches:
        x, y, w, h = (int(v) for v in result.boxes[i])
        cv2.rectangle(img, (x, y), (x + w - 1, y + h - 1), (0, 0, 255), 2)
    cv2.putText(img, result.label, (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 255, 255), 2)
    return img


def remember(frames: Iterable[Any], keep: dict[int, Any]) -> Iterable[Any]:
    """Pass frames through, keeping each by index until its result arrives (for ``--save``)."""
    for i, f in enumerate(frames):
        keep[i] = f
        yield f


def frame_image(frame: Any) -> np.ndarray | None:
    """The pixels of what ``remember`` kept: an image path, a ``read()`` pair or an array."""
    if isinstance(frame, Path):
        return cv2.imread(str(frame))
    if isinstance(frame, tuple):
        return frame[1]
    return frame


def capture_frames(cap: Any) -> Iterable[Any]:
    """``VideoCapture.read`` results until the capture ends (for ``--save``, which must see each
    frame; without ``--save`` the capture goes to ``stream`` directly)."""
    misses = 0
    while misses < 5:
        ok, frame = cap.read()
        if not ok and cap.get(cv2.CAP_PROP_FRAME_COUNT) > 0:
            return  # end of a video file
        misses = 0 if ok else misses + 1
        yield ok, frame


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("source", help="webcam index (0), video file, or folder of images")
    ap.add_argument("--model", default="models/student.onnx", help="model with its sidecar")
    ap.add_argument("--backend", default="auto", help="auto (default), onnxruntime, openvino, ...")
    ap.add_argument(
        "--runner", default="auto", help="auto (default), backend, student, openvino-native"
    )
    ap.add_argument("--threshold", type=float, help="defect probability threshold (default argmax)")
    ap.add_argument("--depth", type=int, default=2, help="frames queued between stages")
    ap.add_argument("--max-frames", type=int, help="stop after this many frames")
    ap.add_argument("--save", type=Path, help="write annotated defective frames here")
    ap.add_argument("--quiet", action="store_true", help="print defects and errors only")
    args = ap.parse_args(argv)

    source, what = open_source(args.source)
    keep: dict[int, Any] = {}
    try:
        inspector = Inspector(
            args.model, backend=args.backend, runner=args.runner, threshold=args.threshold
        )
    except PyInspectError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.save:
        args.save.mkdir(parents=True, exist_ok=True)
        frames = capture_frames(source) if hasattr(source, "read") else source
        source_for_stream: Any = remember(frames, keep)
    else:
        source_for_stream = source
    print(f"{inspector!r} on {what}", file=sys.stderr)
    counts = {"frames": 0, "defective": 0, "errors": 0}
    t0 = time.perf_counter()
    results = inspector.stream(source_for_stream, depth=args.depth)
    try:
        for i, result in enumerate(itertools.islice(results, args.max_frames)):
            counts["frames"] += 1
            frame = keep.pop(i, None)
            if not result.ok:
                counts["errors"] += 1
                print(f"{i:6d}  {result.error}")
                continue
            if result.defective:
                counts["defective"] += 1
                if args.save and frame is not None:
                    image = frame_image(frame)
                    if image is not None:
                        cv2.imwrite(str(args.save / f"{i:06d}.png"), annotate(image, result))
            if result.defective or not args.quiet:
                print(f"{i:6d}  {result}")
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
    except PyInspectError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        results.close()  # stops the stream's threads before the inspector goes
        if hasattr(source, "release"):
            source.release()
        inspector.close()
    dt = time.perf_counter() - t0
    rate = counts["frames"] / dt if dt > 0 else 0.0
    print(
        f"{counts['frames']} frames in {dt:.2f} s ({rate:.1f} frames/s): {counts['defective']}"
        f" defective, {counts['errors']} errors",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
