"""Coding arrays that live on a CUDA device: encode, decode (batched), and the device table cache.

Any object that speaks DLPack and lives on a CUDA device (a torch tensor, a CuPy or JAX array)
is taken as it is, without a copy to the host: the kernels read the symbols where they are and
write decoded symbols into a torch tensor on the same device. The frames are byte for byte those
of the CPU coder. With a build that carries no CUDA kernels, or on a machine without a CUDA
driver, every function here raises :class:`~taskcodec.errors.CudaUnavailableError`.

The public entry points are :func:`taskcodec.encode` / :func:`taskcodec.decode` (which come
here for device arrays) and :func:`decode_batch`.
"""

from __future__ import annotations

import collections
import threading
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np

import taskcodec._core as _core
from taskcodec import _device
from taskcodec.codec.args import int_option
from taskcodec.codec.header import DEFAULT_MAX_SYMBOLS, read_header
from taskcodec.codec.table import CdfTable
from taskcodec.errors import ArgumentTypeError, TaskcodecError

__all__ = ["encode_device", "decode_device", "decode_batch", "device_table"]

_tables: "collections.OrderedDict[Tuple[int, int], Any]" = collections.OrderedDict()
_tables_lock = threading.Lock()
_MAX_CACHED_TABLES = 32


def device_table(table: CdfTable, device: int) -> Any:
    """The table's copy on ``device``, made once and cached (keyed by fingerprint)."""
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


def _index_on(index: Any, dev: Any, torch: Any) -> Tuple[Any, np.ndarray]:
    """An index as an int32 tensor on ``dev`` and as a flat int32 numpy array on the host."""
    if _device.is_device_array(index) or _device.is_torch(index):
        it = _device.as_torch(index).to(device=dev, dtype=torch.int32).contiguous()
        return it, it.cpu().numpy().reshape(-1)
    host = np.ascontiguousarray(_device.as_numpy(index, "index"), dtype=np.int32)
    return torch.as_tensor(host, device=dev), host.reshape(-1)


def encode_device(
    symbols: Any,
    table: CdfTable,
    index: Any,
    mode: int,
    *,
    lanes: int,
    chunk_size: int,
    checksum: bool,
    meta: bytes,
    return_kernel_ms: bool = False,
) -> Any:
    """Encode a CUDA array (called by :func:`taskcodec.encode`, arguments already checked);
    with ``return_kernel_ms`` also the kernel's device time in milliseconds."""
    torch = _device.require_cuda()
    t = _device.as_torch(symbols)
    name = _device.dtype_name(t)
    if name not in _device.DTYPE_CODES:
        raise ArgumentTypeError(f"symbols must be an integer tensor, got {t.dtype}")
    t = t.contiguous()
    device = _device.device_index(t)
    idx_dev, idx_host, keep = 0, None, []
    if mode == int(_core.ROW_INDEX):
        it, idx_host = _index_on(index, t.device, torch)
        if tuple(it.shape) != tuple(t.shape):
            raise TaskcodecError(f"index has shape {tuple(it.shape)}, symbols have shape {tuple(t.shape)}")
        keep.append(it)
        idx_dev = it.data_ptr()
    with torch.cuda.device(device):
        blob, ms = _core.cuda_encode(
            device_table(table, device), t.data_ptr(), _device.DTYPE_CODES[name], [int(s) for s in t.shape],
            int(mode), idx_dev, idx_host, bytes(meta), int(lanes), int(chunk_size), bool(checksum),
            _device.stream_handle(t.device),
        )
    return (blob, ms) if return_kernel_ms else blob


def decode_device(
    blob: Any,
    table: CdfTable,
    index: Any = None,
    *,
    device: Any = "cuda",
    out: Any = None,
    max_symbols: int = DEFAULT_MAX_SYMBOLS,
    frame_on_device: Any = None,
    return_kernel_ms: bool = False,
) -> Any:
    """Decode one frame into a torch tensor on a CUDA device (see :func:`decode_batch`)."""
    outs, ms = decode_batch(
        [blob], table, [index], device=device, outs=[out], max_symbols=max_symbols,
        frames_on_device=[frame_on_device],
    )
    return (outs[0], ms) if return_kernel_ms else outs[0]


def _output(o: Any, info: Any, dev: Any, torch: Any) -> Tuple[Any, Any]:
    """(the tensor returned, the int32 tensor the kernel writes) for one frame."""
    want = getattr(torch, info.dtype)
    if o is None:
        raw = torch.empty(info.shape, dtype=torch.int32, device=dev)
        return raw, raw
    o = _device.as_torch(o)
    if o.device != dev or not o.is_contiguous() or o.dtype not in (torch.int32, want):
        raise TaskcodecError(f"out must be a contiguous int32 or {info.dtype} tensor on {dev}")
    if tuple(o.shape) != info.shape:
        raise TaskcodecError(f"out has shape {tuple(o.shape)}, the frame holds {info.shape}")
    if o.dtype == torch.int32:
        return o, o
    return o, torch.empty(info.shape, dtype=torch.int32, device=dev)


def decode_batch(
    blobs: Sequence[Any],
    table: CdfTable,
    indexes: Optional[Sequence[Any]] = None,
    *,
    device: Any = "cuda",
    outs: Optional[Sequence[Any]] = None,
    max_symbols: int = DEFAULT_MAX_SYMBOLS,
    frames_on_device: Optional[Sequence[Any]] = None,
) -> Tuple[List[Any], float]:
    """Decode many frames coded with one table in one launch (e.g. an edge server's requests
    from many devices). Returns the decoded tensors (each in the dtype its frame records, as
    :func:`taskcodec.decode`) and the kernel's device time in milliseconds. Every frame is
    validated on the host first; a damaged frame raises, naming the frame and chunk.

    ``outs`` (optional): per frame None or a contiguous tensor on ``device`` of the frame's shape,
    int32 or the frame's dtype. ``frames_on_device``: per frame None or a uint8 tensor on the
    device holding the same bytes (saves the copy).
    """
    torch = _device.require_cuda()
    if not isinstance(table, CdfTable):
        raise ArgumentTypeError(f"table must be a CdfTable, got {type(table).__name__}")
    max_symbols = int_option(max_symbols, "max_symbols", 0, 2**64 - 1)
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
    results, raws, infos = [], [], []
    out_ptrs, idx_devs, idx_hosts, frame_devs, keep = [], [], [], [], []
    for i, blob in enumerate(blobs):
        info = read_header(blob, max_symbols=max_symbols)
        infos.append(info)
        o, raw = _output(outs_in[i], info, dev, torch)
        results.append(o)
        raws.append(raw)
        out_ptrs.append(raw.data_ptr() if raw.numel() else 0)
        if indexes[i] is None:
            idx_devs.append(0)
            idx_hosts.append(None)
        else:
            it, host = _index_on(indexes[i], dev, torch)
            keep.append(it)
            idx_devs.append(it.data_ptr() if it.numel() else 0)
            idx_hosts.append(host)
        f = on_dev[i]
        if f is None:
            frame_devs.append(0)
        else:
            ft = _device.as_torch(f)
            if ft.device != dev or ft.dtype != torch.uint8 or ft.numel() != len(memoryview(blob).cast("B")):
                raise TaskcodecError("a device frame must be a uint8 tensor holding the same bytes on the device")
            keep.append(ft)
            frame_devs.append(ft.data_ptr())
    views = [memoryview(b).cast("B") if not isinstance(b, (bytes, bytearray)) else b for b in blobs]
    with torch.cuda.device(dev_index):
        ms, _status = _core.cuda_decode(
            device_table(table, dev_index), views, out_ptrs, idx_devs, idx_hosts, frame_devs,
            int(max_symbols), _device.stream_handle(dev),
        )
    for i, info in enumerate(infos):
        want = getattr(torch, info.dtype)
        if results[i] is not raws[i]:
            results[i].copy_(raws[i])  # a caller's output of the frame's dtype
        elif outs_in[i] is None and want != torch.int32:
            results[i] = raws[i].to(want)  # the dtype the frame records
    return results, float(ms)
