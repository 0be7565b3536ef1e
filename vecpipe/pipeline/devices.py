"""The device vocabulary of stages that compute: ``auto``, ``cpu``, ``cuda``.

The runner checks a stage's ``--device`` against what the stage supports before any work; the
stage's kernels decide how (onnxruntime's execution providers for encoders, faiss for search).
"""

from __future__ import annotations

from vecpipe.errors import UsageError

DEVICES = ("auto", "cpu", "cuda")


def check_device(device: str, supported: tuple[str, ...] = DEVICES) -> str:
    if device not in DEVICES:
        raise UsageError(f"--device {device!r}: choose one of {', '.join(DEVICES)}")
    if device not in supported:
        raise UsageError(f"--device {device}: this stage runs on {', '.join(supported)}")
    return device
