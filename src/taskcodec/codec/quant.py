"""The per-channel quantizer, on the CPU and on CUDA devices, and the meta block that carries
its parameters in a frame.

Arithmetic (the CUDA kernel's, which the CPU path reproduces bit for bit), in float32::

    q = rint((x - zero[c]) * inv[c])      inv[c] = float32(1 / step[c]); no fused multiply-add
    x = q * step[c] + zero[c]             a product, then a sum, each rounded to float32

Meta layout (``TCFQ`` version 1, little-endian), written into a frame's ``meta`` by
:func:`params_meta`::

    "TCFQ"  u8 version (1)  u8 flags  u16 channels
    flags = 1: float32 steps[channels], float32 zeros[channels]
    flags = 0: 8-byte BLAKE2b digest of those 8 * channels bytes (parameters shipped apart)
"""

from __future__ import annotations

import hashlib
import struct
from typing import Any, Optional, Tuple

import numpy as np

import taskcodec._core as _core
from taskcodec import _device
from taskcodec.errors import ArgumentTypeError, CorruptStreamError, TaskcodecError

__all__ = ["quantize", "dequantize", "params_meta", "params_digest", "read_params_meta"]

_META_MAGIC = b"TCFQ"
_META_VERSION = 1
_FLAG_PARAMS = 1


def _layout(shape: Tuple[int, ...], channel_axis: int, channels: int) -> Tuple[int, int]:
    """(elements before the channel axis, elements after it) of an array of ``shape``."""
    ndim = len(shape)
    if isinstance(channel_axis, bool) or not isinstance(channel_axis, (int, np.integer)):
        raise ArgumentTypeError(f"channel_axis must be an int, got {type(channel_axis).__name__}")
    axis = channel_axis + ndim if channel_axis < 0 else channel_axis
    if not 0 <= axis < ndim:
        raise TaskcodecError(f"channel_axis {channel_axis} is out of range for shape {shape}")
    if shape[axis] != channels:
        raise TaskcodecError(f"axis {axis} has {shape[axis]} channels, the parameters have {channels}")
    outer = int(np.prod(shape[:axis], dtype=np.int64))
    inner = int(np.prod(shape[axis + 1:], dtype=np.int64))
    return outer, inner


def _params(step: Any, zero: Any) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """float32 steps, their float32 inverses and zero points, checked."""
    st = _device.to_host(step)
    z = _device.to_host(zero)
    if z.size != st.size:
        raise TaskcodecError("step and zero must have one value per channel")
    if st.size == 0 or not np.all(np.isfinite(st)) or np.any(st <= 0):
        raise TaskcodecError("steps must be positive and finite")
    if not np.all(np.isfinite(z)):
        raise TaskcodecError("zero points must be finite")
    return st, (np.float32(1.0) / st).astype(np.float32), z


def quantize(x: Any, step: Any, zero: Any, *, channel_axis: int = 1) -> Any:
    """Per-channel affine quantization ``q = rint((x - zero[c]) * (1 / step[c]))`` in float32,
    as an int32 array on the array's device (numpy for numpy / CPU tensors, a torch tensor on
    the GPU for CUDA arrays). The CPU and the GPU give the same integers for the same values.

    Non-finite values, or values whose q falls outside int32, raise :class:`TaskcodecError`.
    """
    st, inv, z = _params(step, zero)
    if _device.is_device_array(x):
        torch = _device.require_cuda()
        t = _device.as_torch(x).contiguous()
        if t.dtype != torch.float32:
            raise ArgumentTypeError(f"x must be float32, got {t.dtype}")
        _, inner = _layout(tuple(t.shape), channel_axis, st.size)
        inv_d = torch.as_tensor(inv, device=t.device)
        z_d = torch.as_tensor(z, device=t.device)
        q = torch.empty(t.shape, dtype=torch.int32, device=t.device)
        with torch.cuda.device(t.device):
            _core.cuda_quantize(t.data_ptr(), t.numel(), max(inner, 1), int(st.size), inv_d.data_ptr(),
                                z_d.data_ptr(), q.data_ptr(), _device.stream_handle(t.device))
        return q
    arr = _device.as_numpy(x, "x")
    if arr.dtype != np.float32:
        raise ArgumentTypeError(f"x must be float32, got {arr.dtype}")
    outer, inner = _layout(arr.shape, channel_axis, st.size)
    v = arr.reshape(outer, st.size, inner)
    with np.errstate(invalid="ignore", over="ignore"):
        y = np.rint((v - z[None, :, None]) * inv[None, :, None])
    if not np.all((y >= -2147483648.0) & (y < 2147483648.0)):
        raise TaskcodecError("a value is not finite or quantizes outside int32")
    return y.astype(np.int32).reshape(arr.shape)


def dequantize(q: Any, step: Any, zero: Any, *, channel_axis: int = 1) -> Any:
    """``x = q * step[c] + zero[c]`` in float32 (a product, then a sum, each rounded), on the
    array's device. ``q`` may be any integer array whose values fit int32 (what decode returns)."""
    st, _, z = _params(step, zero)
    if _device.is_device_array(q):
        torch = _device.require_cuda()
        t = _device.as_torch(q)
        if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
            raise ArgumentTypeError(f"q must be integers, got {t.dtype}")
        t = t.to(torch.int32).contiguous()
        _, inner = _layout(tuple(t.shape), channel_axis, st.size)
        st_d = torch.as_tensor(st, device=t.device)
        z_d = torch.as_tensor(z, device=t.device)
        x = torch.empty(t.shape, dtype=torch.float32, device=t.device)
        with torch.cuda.device(t.device):
            _core.cuda_dequantize(t.data_ptr(), t.numel(), max(inner, 1), int(st.size), st_d.data_ptr(),
                                  z_d.data_ptr(), x.data_ptr(), _device.stream_handle(t.device))
        return x
    arr = _device.as_numpy(q, "q")
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise ArgumentTypeError(f"q must be integers, got {arr.dtype}")
    outer, inner = _layout(arr.shape, channel_axis, st.size)
    prod = arr.reshape(outer, st.size, inner).astype(np.float32) * st[None, :, None]
    return (prod + z[None, :, None]).astype(np.float32).reshape(arr.shape)


# ---------------------------------------------------------------- parameters in a frame


def params_digest(steps: np.ndarray, zeros: np.ndarray) -> bytes:
    """8-byte BLAKE2b digest of the parameters (little-endian float32 steps, then zeros)."""
    raw = np.asarray(steps, "<f4").tobytes() + np.asarray(zeros, "<f4").tobytes()
    return hashlib.blake2b(raw, digest_size=8).digest()


def params_meta(steps: Any, zeros: Any, *, in_frame: bool = True) -> bytes:
    """The ``TCFQ`` meta block for these parameters: the parameters themselves (``in_frame``)
    or their digest (for small frames whose receiver holds the parameters)."""
    st = np.ascontiguousarray(steps, dtype="<f4").reshape(-1)
    z = np.ascontiguousarray(zeros, dtype="<f4").reshape(-1)
    if st.size != z.size or not 0 < st.size < 2**16:
        raise TaskcodecError(f"one step and one zero point per channel (1..65535), got {st.size} and {z.size}")
    head = _META_MAGIC + struct.pack("<BBH", _META_VERSION, _FLAG_PARAMS if in_frame else 0, st.size)
    return head + (st.tobytes() + z.tobytes() if in_frame else params_digest(st, z))


def read_params_meta(meta: bytes, channels: int) -> Tuple[Optional[np.ndarray], Optional[np.ndarray], bytes]:
    """``(steps, zeros, digest)`` of a ``TCFQ`` meta block for ``channels`` channels; steps and
    zeros are None when the block carries only the digest. Anything else raises
    :class:`CorruptStreamError`."""
    meta = bytes(meta)
    flags = meta[5] if len(meta) >= 8 else -1
    if (
        len(meta) != 8 + (8 * channels if flags == _FLAG_PARAMS else 8)
        or meta[:4] != _META_MAGIC
        or struct.unpack_from("<BBH", meta, 4) != (_META_VERSION, flags, channels)
    ):
        raise CorruptStreamError(
            f"frame meta is not a TCFQ v{_META_VERSION} block for {channels} channels "
            f"({len(meta)} bytes, starts {meta[:4]!r})"
        )
    if flags != _FLAG_PARAMS:
        return None, None, meta[8:16]
    steps = np.frombuffer(meta, dtype="<f4", count=channels, offset=8).astype(np.float32)
    zeros = np.frombuffer(meta, dtype="<f4", count=channels, offset=8 + 4 * channels).astype(np.float32)
    if not (np.isfinite(steps).all() and (steps > 0).all() and np.isfinite(zeros).all()):
        raise CorruptStreamError("frame meta holds non-finite or non-positive steps")
    return steps, zeros, params_digest(steps, zeros)
