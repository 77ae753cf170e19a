"""Arrays that may be torch tensors or live on a CUDA device: the one place below
:mod:`taskcodec.nn` that touches torch, DLPack or CUDA streams.

Everything here recognises torch tensors by duck typing and imports torch only when a torch
tensor or a device array is actually in hand, so the numpy-level layers (:mod:`taskcodec.codec`,
:mod:`taskcodec.fl`) import without torch.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

import taskcodec._core as _core
from taskcodec.errors import ArgumentTypeError, CudaUnavailableError, MissingDependencyError, TaskcodecError

__all__ = [
    "KDL_CUDA",
    "DTYPE_CODES",
    "available",
    "is_device_array",
    "is_torch",
    "require_cuda",
    "torch_module",
    "as_torch",
    "as_numpy",
    "to_host",
    "from_numpy",
    "dtype_name",
    "device_index",
    "stream_handle",
]

KDL_CUDA = 2
"""DLPack device type of CUDA memory."""

DTYPE_CODES = {  # element type name -> frame dtype code (docs/format.md, table 3.2)
    "int8": 1, "uint8": 2, "int16": 3, "uint16": 4, "int32": 5, "uint32": 6, "int64": 7, "uint64": 8,
}


def available() -> bool:
    """True when this build carries the CUDA kernels and a CUDA device is usable."""
    return bool(_core.has_cuda) and bool(_core.cuda_available())


def is_torch(x: Any) -> bool:
    """True for a torch tensor (checked without importing torch)."""
    return hasattr(x, "detach") and hasattr(x, "device") and hasattr(x, "dtype") and not isinstance(x, np.ndarray)


def is_device_array(x: Any) -> bool:
    """True for a DLPack-capable array that lives on a CUDA device (never imports torch)."""
    dev = getattr(x, "__dlpack_device__", None)
    if dev is None or isinstance(x, np.ndarray):
        return False
    try:
        kind, _ = dev()
    except Exception:  # a foreign object whose protocol method fails: not ours to take
        return False
    return int(kind) == KDL_CUDA


def require_cuda() -> Any:
    """The torch module, once it is certain that CUDA kernels and a device are usable.

    Raises :class:`~taskcodec.errors.CudaUnavailableError` saying which of the two is missing.
    """
    if not _core.has_cuda:
        raise CudaUnavailableError(
            "this taskcodec build carries no CUDA kernels (built without nvcc or with "
            "TASKCODEC_CUDA=OFF); move the array to the CPU or install a CUDA build"
        )
    if not _core.cuda_available():
        raise CudaUnavailableError("no CUDA device is usable here (no driver or no GPU)")
    return torch_module()


def torch_module() -> Any:
    """``import torch``, with an error of the package's tree when it is not installed."""
    try:
        import torch
    except ImportError as e:  # pragma: no cover - torch is present wherever a tensor was given
        raise MissingDependencyError("this needs PyTorch: pip install 'taskcodec[nn]'") from e
    return torch


def as_torch(x: Any) -> Any:
    """``x`` as a torch tensor: itself, or a zero-copy view of a DLPack array."""
    torch = torch_module()
    if isinstance(x, torch.Tensor):
        return x
    return torch.from_dlpack(x)


def as_numpy(x: Any, what: str, *, writeable: bool = False) -> np.ndarray:
    """numpy view of a numpy array, a CPU torch tensor or an array-like (no copy if avoidable).

    A tensor on another device raises; ``writeable`` views share the tensor's memory.
    """
    if is_torch(x):
        if x.device.type != "cpu":
            raise TaskcodecError(f"{what} is on {x.device}; move it to the CPU with .cpu() or give a CUDA tensor")
        x = x.detach()
        if str(x.dtype) == "torch.bfloat16":
            if writeable:
                raise ArgumentTypeError(f"{what} is bfloat16, which numpy cannot hold")
            x = x.float()
        return x.numpy()
    if not isinstance(x, np.ndarray) and hasattr(x, "numpy") and callable(x.numpy):  # flwr Array
        return np.asarray(x.numpy())
    if writeable and not isinstance(x, np.ndarray):
        raise ArgumentTypeError(f"{what} must be a numpy array or a torch tensor, got {type(x).__name__}")
    return np.asarray(x)


def to_host(x: Any, dtype: Any = np.float32) -> np.ndarray:
    """numpy form of an array that may be a torch tensor or live on a device: a flat copy of
    dtype ``dtype`` (e.g. per-channel parameters), or with ``dtype=None`` the array as it is."""
    if is_torch(x):
        x = x.detach().cpu().float().numpy() if str(x.dtype) == "torch.bfloat16" else x.detach().cpu().numpy()
    elif is_device_array(x):
        x = as_torch(x).cpu().numpy()
    arr = np.asarray(x)
    return arr.astype(dtype).reshape(-1) if dtype is not None else arr


def from_numpy(a: np.ndarray, dtype: Optional[str] = None) -> Any:
    """A CPU torch tensor holding ``a``, cast to the torch dtype named ``dtype`` (if any)."""
    torch = torch_module()
    t = torch.from_numpy(np.ascontiguousarray(a))
    if dtype is not None:
        dt = getattr(torch, dtype, None)
        if isinstance(dt, torch.dtype) and dt != t.dtype:
            t = t.to(dt)
    return t


def dtype_name(x: Any) -> str:
    """The element type's name without a library prefix: ``"float32"``, ``"bfloat16"``, ..."""
    return str(x.dtype).replace("torch.", "")


def device_index(t: Any) -> int:
    """The CUDA device number of a torch tensor (the current device when it has none)."""
    if t.device.index is not None:
        return int(t.device.index)
    return int(torch_module().cuda.current_device())


def stream_handle(device: Any) -> int:
    """The current CUDA stream of ``device`` as an integer, as the core's entry points take it."""
    return int(torch_module().cuda.current_stream(device).cuda_stream)
