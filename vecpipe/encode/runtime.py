"""Which model runtime is installed: onnxruntime (the ``[cpu]`` extra) or onnxruntime-gpu (``[gpu]``).

Both packages install the same ``onnxruntime`` module, so having both makes one hide the other (the
CPU build hides the CUDA provider). vecpipe asks for exactly one through its extras, and says so in
one line when it finds none, or both.
"""

from __future__ import annotations

from importlib import metadata
from types import ModuleType

from vecpipe.errors import ModelError

CPU_EXTRA = "pip install 'vecpipe[cpu]'"
GPU_EXTRA = "pip install 'vecpipe[gpu]'"
RUNTIMES = ("onnxruntime", "onnxruntime-gpu")


def installed_runtimes() -> list[str]:
    """The onnxruntime distributions installed (name==version), in :data:`RUNTIMES` order."""
    found = []
    for name in RUNTIMES:
        try:
            found.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return found


def onnxruntime() -> ModuleType:
    """The ``onnxruntime`` module, or a one-line error naming the extra that installs it."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise ModelError(f"running a model needs onnxruntime: {CPU_EXTRA} (or {GPU_EXTRA} on a CUDA machine)") from None
    return ort


def cuda_missing_reason() -> str:
    """Why onnxruntime offers no CUDA provider here, and the fix."""
    runtimes = installed_runtimes()
    names = [r.split("==")[0] for r in runtimes]
    if len(names) > 1:
        return ("both onnxruntime and onnxruntime-gpu are installed, and the CPU build hides the CUDA provider: "
                f"pip uninstall -y onnxruntime onnxruntime-gpu && {GPU_EXTRA}")
    if names == ["onnxruntime-gpu"]:
        return "onnxruntime-gpu is installed but finds no usable CUDA device or CUDA libraries; use --device cpu"
    return f"onnxruntime here is the CPU build; {GPU_EXTRA} (instead of [cpu]) or use --device cpu"
