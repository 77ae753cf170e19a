"""The GPU path of encode / decode / quantize, for arrays that live on a CUDA device.

Any object that speaks DLPack and lives on a CUDA device (a torch tensor, a CuPy or JAX
array) is taken as it is, without a copy to the host: the kernels read the symbols where
they are and write decoded symbols into a torch tensor on the same device. The frames are
byte for byte those of the CPU coder. torch is imported only when such an array is seen.

With a build that carries no CUDA kernels, or on a machine without a CUDA driver, the
functions here raise :class:`~taskcodec.errors.TaskcodecError` saying so.
"""

from __future__ import annotations

import collections
import threading
from typing import Any, Optional, Sequence, Tuple

import numpy as np

from taskcodec import _core
from taskcodec.errors import TaskcodecError

__all__ = [
    "available",
    "is_device_array",
    "encode_device",
    "decode_device",
    "decode_batch",
    "quantize",
    "dequantize",
    "topk",
    "residual_subtract",
    "scatter_add",
]

_KDL_CUDA = 2  # DLPack device type of CUDA memory
_DTYPE_CODES = {  # torch dtype name -> frame dtype code (docs/format.md)
    "int8": 1, "uint8": 2, "int16": 3, "uint16": 4, "int32": 5, "uint32": 6, "int64": 7, "uint64": 8,
}


def available() -> bool:
    """True when this build carries the CUDA kernels and a CUDA device is usable."""
    return bool(_core.has_cuda) and bool(_core.cuda_available())


def is_device_array(x: Any) -> bool:
    """True for a DLPack-capable array that lives on a CUDA device (never imports torch)."""
    dev = getattr(x, "__dlpack_device__", None)
    if dev is None or isinstance(x, np.ndarray):
        return False
    try:
        kind, _ = dev()
    except Exception:  # a foreign object whose protocol method fails: not ours to take
        return False
    return int(kind) == _KDL_CUDA


def _require() -> Any:
    if not _core.has_cuda:
        raise TaskcodecError(
            "this taskcodec build carries no CUDA kernels (built without nvcc or with "
            "TASKCODEC_CUDA=OFF); move the array to the CPU or install a CUDA build"
        )
    if not _core.cuda_available():
        raise TaskcodecError("no CUDA device is usable here (no driver or no GPU)")
    import torch  # the device arrays are handled through torch

    return torch


def _as_torch(x: Any, torch: Any) -> Any:
    if isinstance(x, torch.Tensor):
        return x
    return torch.from_dlpack(x)


_tables: "collections.OrderedDict[Tuple[int, int], Any]" = collections.OrderedDict()
_tables_lock = threading.Lock()
_MAX_CACHED_TABLES = 32


def _device_table(table: Any, device: int) -> Any:
    """The table's copy on `device`, made once and cached (keyed by fingerprint)."""
    key = (table.fingerprint, device)
    with _tables_lock:
        dt = _tables.get(key)
        if dt is not None:
            _tables.move_to_end(key)
            return dt
    dt = _core.DeviceTable(table._t, device)
    with _tables_lock:
        _tables[key] = dt
        while len(_tables) > _MAX_CACHED_TABLES:
            _tables.popitem(last=False)
    return dt


def _stream(torch: Any, device: Any) -> int:
    return int(torch.cuda.current_stream(device).cuda_stream)


def encode_device(
    symbols: Any,
    table: Any,
    index: Any,
    mode: int,
    *,
    lanes: int,
    chunk_size: int,
    checksum: bool,
    meta: bytes,
    return_kernel_ms: bool = False,
) -> Any:
    """Encode a CUDA array (called by :func:`taskcodec.encode`; arguments already checked)."""
    torch = _require()
    t = _as_torch(symbols, torch)
    name = str(t.dtype).replace("torch.", "")
    if name not in _DTYPE_CODES:
        raise TaskcodecError(f"symbols must be an integer tensor, got {t.dtype}")
    t = t.contiguous()
    device = t.device.index if t.device.index is not None else torch.cuda.current_device()
    idx_dev = 0
    idx_host = None
    keep = []
    if mode == int(_core.ROW_INDEX):
        if is_device_array(index) or isinstance(index, torch.Tensor):
            it = _as_torch(index, torch)
            it = it.to(device=t.device, dtype=torch.int32).contiguous()
        else:
            it = torch.as_tensor(np.ascontiguousarray(index, dtype=np.int32), device=t.device)
        if tuple(it.shape) != tuple(t.shape):
            raise TaskcodecError(f"index has shape {tuple(it.shape)}, symbols have shape {tuple(t.shape)}")
        keep.append(it)
        idx_dev = it.data_ptr()
        idx_host = it.cpu().numpy()
    dt = _device_table(table, device)
    with torch.cuda.device(device):
        blob, ms = _core.cuda_encode(
            dt, t.data_ptr(), _DTYPE_CODES[name], [int(s) for s in t.shape], int(mode), idx_dev,
            idx_host, bytes(meta), int(lanes), int(chunk_size), bool(checksum), _stream(torch, t.device),
        )
    return (blob, ms) if return_kernel_ms else blob


def decode_device(
    blob: Any,
    table: Any,
    index: Any = None,
    *,
    device: Any = "cuda",
    out: Any = None,
    max_symbols: int,
    frame_on_device: Any = None,
    return_kernel_ms: bool = False,
) -> Any:
    """Decode one frame into an int32 torch tensor on a CUDA device."""
    outs, ms = decode_batch(
        [blob], table, [index], device=device, outs=[out], max_symbols=max_symbols,
        frames_on_device=[frame_on_device],
    )
    return (outs[0], ms) if return_kernel_ms else outs[0]


def decode_batch(
    blobs: Sequence[Any],
    table: Any,
    indexes: Optional[Sequence[Any]] = None,
    *,
    device: Any = "cuda",
    outs: Optional[Sequence[Any]] = None,
    max_symbols: int,
    frames_on_device: Optional[Sequence[Any]] = None,
) -> Tuple[list, float]:
    """Decode many frames coded with one table in one launch (e.g. an edge server's
    requests from many devices). Returns the int32 tensors and the kernel's device time
    in milliseconds. A damaged frame raises, naming the frame and chunk."""
    torch = _require()
    from taskcodec.codec.frame import read_header

    n = len(blobs)
    indexes = list(indexes) if indexes is not None else [None] * n
    outs_in = list(outs) if outs is not None else [None] * n
    on_dev = list(frames_on_device) if frames_on_device is not None else [None] * n
    if not (len(indexes) == len(outs_in) == len(on_dev) == n):
        raise TaskcodecError("one index, output and device frame (or None) per frame")
    dev = torch.device(device)
    if dev.type != "cuda":
        raise TaskcodecError(f"device must be a CUDA device, got {dev}")
    dev_index = dev.index if dev.index is not None else torch.cuda.current_device()
    dev = torch.device("cuda", dev_index)
    results = []
    out_ptrs, idx_devs, idx_hosts, frame_devs, keep = [], [], [], [], []
    for i, blob in enumerate(blobs):
        info = read_header(blob, max_symbols=max_symbols)
        o = outs_in[i]
        if o is None:
            o = torch.empty(info.shape, dtype=torch.int32, device=dev)
        else:
            o = _as_torch(o, torch)
            if o.device != dev or o.dtype != torch.int32 or not o.is_contiguous():
                raise TaskcodecError(f"out must be a contiguous int32 tensor on {dev}")
            if tuple(o.shape) != info.shape:
                raise TaskcodecError(f"out has shape {tuple(o.shape)}, the frame holds {info.shape}")
        results.append(o)
        out_ptrs.append(o.data_ptr() if o.numel() else 0)
        ix = indexes[i]
        if ix is None:
            idx_devs.append(0)
            idx_hosts.append(None)
        else:
            it = _as_torch(ix, torch) if (is_device_array(ix) or isinstance(ix, torch.Tensor)) else None
            if it is None:
                host = np.ascontiguousarray(ix, dtype=np.int32)
                it = torch.as_tensor(host, device=dev)
            else:
                it = it.to(device=dev, dtype=torch.int32).contiguous()
                host = it.cpu().numpy()
            keep.append(it)
            idx_devs.append(it.data_ptr() if it.numel() else 0)
            idx_hosts.append(host.reshape(-1))
        f = on_dev[i]
        if f is None:
            frame_devs.append(0)
        else:
            ft = _as_torch(f, torch)
            if ft.device != dev or ft.dtype != torch.uint8 or ft.numel() != len(memoryview(blob).cast("B")):
                raise TaskcodecError("a device frame must be a uint8 tensor holding the same bytes on the device")
            keep.append(ft)
            frame_devs.append(ft.data_ptr())
    views = [memoryview(b).cast("B") if not isinstance(b, (bytes, bytearray)) else b for b in blobs]
    with torch.cuda.device(dev_index):
        ms, _status = _core.cuda_decode(
            _device_table(table, dev_index), views, out_ptrs, idx_devs, idx_hosts, frame_devs,
            int(max_symbols), _stream(torch, dev),
        )
    return results, float(ms)


def _channel_layout(shape: Tuple[int, ...], channel_axis: int, channels: int) -> int:
    ndim = len(shape)
    axis = channel_axis + ndim if channel_axis < 0 else channel_axis
    if not 0 <= axis < ndim:
        raise TaskcodecError(f"channel_axis {channel_axis} is out of range for shape {shape}")
    if shape[axis] != channels:
        raise TaskcodecError(f"axis {axis} has {shape[axis]} channels, the parameters have {channels}")
    inner = 1
    for s in shape[axis + 1:]:
        inner *= int(s)
    return max(inner, 1)


def quantize(x: Any, step: Any, zero: Any, *, channel_axis: int = 1) -> Any:
    """Per-channel affine quantization, ``q = rint((x - zero[c]) * (1 / step[c]))`` in
    float32 (no fused multiply-add), as an int32 array; on the array's device.

    CPU arrays (numpy or torch) are quantized with numpy and give the same integers as the
    GPU kernel does on the same values. Non-finite values, or values whose q falls outside
    int32, raise :class:`TaskcodecError`.
    """
    if is_device_array(x):
        torch = _require()
        t = _as_torch(x, torch).contiguous()
        if t.dtype != torch.float32:
            raise TaskcodecError(f"x must be float32, got {t.dtype}")
        inv = torch.as_tensor(_inverse_steps(_host(step)), device=t.device)
        z = torch.as_tensor(_host(zero), device=t.device).reshape(-1)
        if z.numel() != inv.numel():
            raise TaskcodecError("step and zero must have one value per channel")
        inner = _channel_layout(tuple(t.shape), channel_axis, int(inv.numel()))
        q = torch.empty(t.shape, dtype=torch.int32, device=t.device)
        with torch.cuda.device(t.device):
            _core.cuda_quantize(t.data_ptr(), t.numel(), inner, int(inv.numel()), inv.data_ptr(),
                                z.data_ptr(), q.data_ptr(), _stream(torch, t.device))
        return q
    arr = _host(x, None)
    if arr.dtype != np.float32:
        raise TaskcodecError(f"x must be float32, got {arr.dtype}")
    st, z, c = _cpu_channels(arr, step, zero, channel_axis)
    inv = _inverse_steps(st)
    with np.errstate(invalid="ignore", over="ignore"):
        y = np.rint((arr.reshape(-1) - z[c]) * inv[c])
    if not np.all((y >= -2147483648.0) & (y < 2147483648.0)):
        raise TaskcodecError("a value is not finite or quantizes outside int32")
    return y.astype(np.int32).reshape(arr.shape)


def dequantize(q: Any, step: Any, zero: Any, *, channel_axis: int = 1) -> Any:
    """``x = q * step[c] + zero[c]`` in float32 (a product, then a sum, each rounded); on
    the array's device."""
    if is_device_array(q):
        torch = _require()
        t = _as_torch(q, torch).contiguous()
        if t.dtype != torch.int32:
            raise TaskcodecError(f"q must be int32, got {t.dtype}")
        st = torch.as_tensor(_host(step), device=t.device)
        z = torch.as_tensor(_host(zero), device=t.device)
        if z.numel() != st.numel():
            raise TaskcodecError("step and zero must have one value per channel")
        inner = _channel_layout(tuple(t.shape), channel_axis, int(st.numel()))
        x = torch.empty(t.shape, dtype=torch.float32, device=t.device)
        with torch.cuda.device(t.device):
            _core.cuda_dequantize(t.data_ptr(), t.numel(), inner, int(st.numel()), st.data_ptr(),
                                  z.data_ptr(), x.data_ptr(), _stream(torch, t.device))
        return x
    arr = _host(q, None)
    st, z, c = _cpu_channels(arr, step, zero, channel_axis)
    prod = arr.reshape(-1).astype(np.float32) * st[c]
    return (prod + z[c]).astype(np.float32).reshape(arr.shape)


def _cpu_channels(arr: np.ndarray, step: Any, zero: Any, channel_axis: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-channel steps and zeros as float32, and the channel of every element."""
    st = _host(step)
    z = _host(zero)
    if z.size != st.size:
        raise TaskcodecError("step and zero must have one value per channel")
    inner = _channel_layout(arr.shape, channel_axis, st.size)
    return st, z, (np.arange(arr.size, dtype=np.int64) // inner) % st.size


def _host(x: Any, dtype: Any = np.float32) -> np.ndarray:
    """numpy copy of an array that may live on a device (small per-channel parameters)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    elif is_device_array(x):
        x = _require().from_dlpack(x).cpu().numpy()
    arr = np.asarray(x)
    return arr.astype(dtype).reshape(-1) if dtype is not None else arr


def _inverse_steps(step: np.ndarray) -> np.ndarray:
    st = np.asarray(step, dtype=np.float32).reshape(-1)
    if st.size == 0 or not np.all(np.isfinite(st)) or np.any(st <= 0):
        raise TaskcodecError("steps must be positive and finite")
    return (np.float32(1.0) / st).astype(np.float32)


# ---------------------------------------------------------------- sparse updates


def _flat_f32(x: Any, torch: Any, what: str) -> Any:
    t = _as_torch(x, torch)
    if t.dtype != torch.float32 or t.device.type != "cuda" or not t.is_contiguous():
        raise TaskcodecError(f"{what} must be a contiguous float32 tensor on a CUDA device")
    return t


def topk(update: Any, k: int, *, residual: Any = None, return_kernel_ms: bool = False) -> Any:
    """Exactly ``k`` entries of largest ``|acc|`` of a CUDA float32 tensor, ties to the lower
    index, indices ascending (the sparse-update selection contract; the CPU coder selects
    the same entries). ``acc = update``, or with error feedback ``residual + update``: the
    residual tensor then holds ``acc`` afterwards (subtract what was sent with
    :func:`residual_subtract`); a NaN or infinity raises and leaves it unchanged.

    Returns ``(indices int32, values float32)`` on the same device.
    """
    torch = _require()
    u = _flat_f32(update, torch, "update")
    n = u.numel()
    if n >= 2**31:
        raise TaskcodecError("the GPU top-k takes tensors of fewer than 2^31 entries")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= int(k) <= n:
        raise TaskcodecError(f"k must be an int in 0..{n}, got {k!r}")
    k = int(k)
    res_ptr = 0
    if residual is not None:
        r = _flat_f32(residual, torch, "residual")
        if r.numel() != n or r.device != u.device:
            raise TaskcodecError("residual must match the update's size and device")
        res_ptr = r.data_ptr()
    idx = torch.empty(k, dtype=torch.int32, device=u.device)
    val = torch.empty(k, dtype=torch.float32, device=u.device)
    with torch.cuda.device(u.device):
        ms = _core.cuda_topk(u.data_ptr(), res_ptr, n, k, idx.data_ptr() if k else 0,
                             val.data_ptr() if k else 0, _stream(torch, u.device))
    return (idx, val, ms) if return_kernel_ms else (idx, val)


def residual_subtract(residual: Any, indices: Any, sent: Any) -> None:
    """``residual[indices] -= sent`` on the device (error feedback after coding)."""
    torch = _require()
    r = _flat_f32(residual, torch, "residual")
    i = _as_torch(indices, torch).to(torch.int32).contiguous()
    v = _flat_f32(sent, torch, "sent")
    if i.numel() != v.numel():
        raise TaskcodecError("one sent value per index")
    if i.numel() and (int(i.min()) < 0 or int(i.max()) >= r.numel()):
        raise TaskcodecError("an index lies outside the residual")
    with torch.cuda.device(r.device):
        _core.cuda_residual_subtract(r.data_ptr(), i.data_ptr() if i.numel() else 0,
                                     v.data_ptr() if v.numel() else 0, i.numel(), _stream(torch, r.device))


def scatter_add(dense: Any, indices: Any, values: Any, scale: float = 1.0) -> None:
    """``dense[indices] += scale * values`` on the device (decode-and-accumulate of a sparse
    update). Every index is checked first: a bad update raises and changes nothing."""
    torch = _require()
    d = _flat_f32(dense, torch, "dense")
    i = _as_torch(indices, torch)
    if i.dtype not in (torch.int32, torch.int64) or (i.numel() and int(i.min()) < 0):
        raise TaskcodecError("indices must be non-negative integers")
    if i.numel() and int(i.max()) >= d.numel():
        raise TaskcodecError(f"an index lies outside the {d.numel()} entries of the tensor")
    i = i.to(torch.int32).contiguous()
    v = _flat_f32(values, torch, "values")
    if i.numel() != v.numel():
        raise TaskcodecError("one value per index")
    with torch.cuda.device(d.device):
        _core.cuda_scatter_add(d.data_ptr(), d.numel(), i.data_ptr() if i.numel() else 0,
                               v.data_ptr() if v.numel() else 0, i.numel(), float(scale),
                               _stream(torch, d.device))
