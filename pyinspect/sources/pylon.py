"""GenICam cameras through Basler's pylon SDK (``pypylon``, the ``line`` extra).

Exposure, gain and trigger mode are set by name; any other GenICam feature passes through
``features`` (set in the order given, so ``Width``/``Height`` go before what depends on them).
With ``trigger_source = "Software"`` (and trigger mode on) the source triggers each frame itself,
paced at ``fps``; otherwise the camera's own clock or its hardware trigger paces it. The SDK
reuses its buffers, so each frame is copied out, once, before the grab result is released. The
camera's ``TimeStamp`` (ticks; the emulator reports 0) goes into the record as
``camera_timestamp``.

The emulator: ``PYLON_CAMEMU=N`` in the environment before pylon's first use gives N emulated
cameras (serials ``0815-0000``, ...); ``features = {TestImageSelector = "Off", ImageFileMode =
"On", ImageFilename = "/abs/folder"}`` serves that folder's images in name order, cycling.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from pyinspect.errors import suggest
from pyinspect.sources.base import Grab, Source, SourceError, SourceLost

__all__ = ["PylonSource"]

log = logging.getLogger("pyinspect.watch")

_EXPOSURE = ("ExposureTime", "ExposureTimeAbs")
_GAIN = ("Gain", "GainAbs")


def _pylon() -> Any:
    try:
        from pypylon import pylon
    except ImportError as exc:
        msg = "the pylon source needs pypylon: pip install 'pyinspect[line]'"
        raise SourceError(msg) from exc
    return pylon


class PylonSource(Source):
    """One camera by ``serial`` (or the ``index``-th camera pylon finds)."""

    kind = "pylon"

    def __init__(self, name: str, *, serial: str | None = None, index: int = 0,
                 exposure_us: float | None = None, gain: float | None = None,
                 trigger_mode: str | None = None, trigger_source: str | None = None,
                 fps: float | None = None, features: dict[str, Any] | None = None,
                 timeout_ms: int = 1000, buffers: int = 8, **kwargs: Any) -> None:  # fmt: skip
        super().__init__(name, **kwargs)
        self.serial, self.index = serial, index
        self.exposure_us, self.gain = exposure_us, gain
        self.trigger_mode, self.trigger_source = trigger_mode, trigger_source
        self.period = 1.0 / fps if fps else 0.0
        self.features = dict(features or {})
        self.timeout_ms, self.buffers = timeout_ms, buffers
        self._cam: Any = None
        self._software = False
        self._next = 0.0

    def _device(self, pylon: Any) -> Any:
        tl = pylon.TlFactory.GetInstance()
        devices = list(tl.EnumerateDevices())
        if self.serial is not None:
            serials = [d.GetSerialNumber() for d in devices]
            if self.serial not in serials:
                msg = (f"pylon source {self.name!r}: no camera with serial {self.serial!r}"
                       f" (found {serials})")  # fmt: skip
                raise SourceLost(msg)
            return tl.CreateDevice(devices[serials.index(self.serial)])
        if self.index >= len(devices):
            msg = f"pylon source {self.name!r}: camera {self.index} asked, {len(devices)} found"
            raise SourceLost(msg)
        return tl.CreateDevice(devices[self.index])

    def open(self) -> None:
        pylon = _pylon()
        try:
            cam = pylon.InstantCamera(self._device(pylon))
            cam.Open()
        except SourceLost:
            raise
        except Exception as exc:  # the SDK's own exceptions: the camera is there but refuses
            msg = f"pylon source {self.name!r}: cannot open the camera: {exc}"
            raise SourceLost(msg) from exc
        try:
            self._configure(cam)
            cam.MaxNumBuffer.Value = self.buffers
            cam.StartGrabbing(pylon.GrabStrategy_OneByOne)
        except BaseException:
            cam.Close()
            raise
        self._cam = cam

    def _configure(self, cam: Any) -> None:
        nodes = cam.GetNodeMap()
        settings: list[tuple[tuple[str, ...], Any]] = [((k,), v) for k, v in self.features.items()]
        if self.exposure_us is not None:
            settings.append((_EXPOSURE, self.exposure_us))
        if self.gain is not None:
            settings.append((_GAIN, self.gain))
        if self.trigger_mode is not None:
            settings += [
                (("TriggerSelector",), "FrameStart"),
                (("TriggerMode",), self.trigger_mode),
            ]
        if self.trigger_source is not None:
            settings.append((("TriggerSource",), self.trigger_source))
        for names, value in settings:
            node = next((p for p in map(nodes.GetNode, names) if p is not None and p.IsValid()),
                        None)  # fmt: skip
            if node is None:
                known = [p.GetNode().GetName() for p in nodes.GetNodes() if p.IsValid()]
                msg = (f"pylon source {self.name!r}: the camera has no feature {names[0]!r}."
                       f"{suggest(names[0], known)}")  # fmt: skip
                raise SourceError(msg)
            try:
                node.FromString(str(value).lower() if isinstance(value, bool) else str(value))
            except Exception as exc:
                msg = f"pylon source {self.name!r}: cannot set {names[0]} = {value!r}: {exc}"
                raise SourceError(msg) from exc
        self._software = (self.trigger_mode or "").lower() == "on" and (
            self.trigger_source or ""
        ).lower() == "software"

    def grab(self, stop: threading.Event) -> Grab | None:
        pylon = _pylon()
        if self._cam is None:
            self.open()
        cam = self._cam
        try:
            if self.period:
                delay = self._next - time.monotonic()
                if delay > 0 and stop.wait(delay):
                    return None
                self._next = max(self._next + self.period, time.monotonic())
            if self._software:
                if not cam.WaitForFrameTriggerReady(self.timeout_ms, pylon.TimeoutHandling_Return):
                    return None
                cam.ExecuteSoftwareTrigger()
            result = cam.RetrieveResult(self.timeout_ms, pylon.TimeoutHandling_Return)
        except Exception as exc:
            msg = f"pylon source {self.name!r}: camera lost: {exc}"
            raise SourceLost(msg) from exc
        if result is None or not result.IsValid():
            if cam.IsCameraDeviceRemoved():
                msg = f"pylon source {self.name!r}: camera removed"
                raise SourceLost(msg)
            return None
        wall, mono = time.time_ns(), time.perf_counter_ns()
        try:
            if not result.GrabSucceeded():
                error = f"grab failed: {result.GetErrorDescription()}"
                return Grab(None, wall, mono, error=error)
            # The SDK refills this buffer after Release(): copied once, from a view of it
            # (GetArray() copies into a new bytearray already; a .copy() of that was a second).
            with result.GetArrayZeroCopy() as view:
                image = view.copy()
            return Grab(image, wall, mono, camera_timestamp=int(result.GetTimeStamp()))
        finally:
            result.Release()

    def close(self) -> None:
        cam, self._cam = self._cam, None
        if cam is not None:
            try:
                if cam.IsGrabbing():
                    cam.StopGrabbing()
                cam.Close()
            except Exception as exc:  # a removed camera cannot be closed cleanly
                log.warning("pylon source %r: closing the camera: %s", self.name, exc)
