"""Sparse updates on a CUDA device: top-k selection (with error feedback), residual subtract
and scatter-add kernels, and the device side of a compressor round (:class:`DeviceRound`).

The selection contract is the CPU coder's: exactly ``k`` entries of largest ``|acc|``, ties to
the lower index, indices ascending. Without a CUDA build or a usable device every function raises
:class:`~taskcodec.errors.CudaUnavailableError`.
"""

from __future__ import annotations

from typing import Any, Tuple

import numpy as np

import taskcodec._core as _core
from taskcodec import _device
from taskcodec.errors import ArgumentTypeError, TaskcodecError

__all__ = ["topk", "residual_subtract", "scatter_add", "DeviceRound"]


def _flat_f32(x: Any, torch: Any, what: str) -> Any:
    t = _device.as_torch(x)
    if t.dtype != torch.float32 or t.device.type != "cuda" or not t.is_contiguous():
        raise TaskcodecError(f"{what} must be a contiguous float32 tensor on a CUDA device")
    return t


def topk(update: Any, k: int, *, residual: Any = None, return_kernel_ms: bool = False) -> Any:
    """Exactly ``k`` entries of largest ``|acc|`` of a CUDA float32 tensor, ties to the lower
    index, indices ascending. ``acc = update``, or with error feedback ``residual + update``: the
    residual tensor then holds ``acc`` afterwards (subtract what was sent with
    :func:`residual_subtract`); a NaN or infinity raises and leaves it unchanged.

    Returns ``(indices int32, values float32)`` on the same device (and the kernel's
    milliseconds with ``return_kernel_ms``).
    """
    torch = _device.require_cuda()
    u = _flat_f32(update, torch, "update")
    n = u.numel()
    if n >= 2**31:
        raise TaskcodecError("the GPU top-k takes tensors of fewer than 2^31 entries")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise ArgumentTypeError(f"k must be an int, got {type(k).__name__}")
    if not 0 <= int(k) <= n:
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
                             val.data_ptr() if k else 0, _device.stream_handle(u.device))
    return (idx, val, ms) if return_kernel_ms else (idx, val)


def residual_subtract(residual: Any, indices: Any, sent: Any) -> None:
    """``residual[indices] -= sent`` on the device (error feedback after coding)."""
    torch = _device.require_cuda()
    r = _flat_f32(residual, torch, "residual")
    i = _device.as_torch(indices).to(device=r.device, dtype=torch.int32).contiguous()
    v = _flat_f32(sent, torch, "sent")
    if i.numel() != v.numel():
        raise TaskcodecError("one sent value per index")
    if i.numel() and (int(i.min()) < 0 or int(i.max()) >= r.numel()):
        raise TaskcodecError("an index lies outside the residual")
    with torch.cuda.device(r.device):
        _core.cuda_residual_subtract(r.data_ptr(), i.data_ptr() if i.numel() else 0,
                                     v.data_ptr() if v.numel() else 0, i.numel(),
                                     _device.stream_handle(r.device))


def scatter_add(dense: Any, indices: Any, values: Any, scale: float = 1.0) -> None:
    """``dense[indices] += scale * values`` on the device (decode-and-accumulate of a sparse
    update). Every index is checked first: a bad update raises and changes nothing."""
    torch = _device.require_cuda()
    d = _flat_f32(dense, torch, "dense")
    i = _device.as_torch(indices)
    if i.dtype not in (torch.int32, torch.int64) or (i.numel() and int(i.min()) < 0):
        raise TaskcodecError("indices must be non-negative integers")
    if i.numel() and int(i.max()) >= d.numel():
        raise TaskcodecError(f"an index lies outside the {d.numel()} entries of the tensor")
    i = i.to(device=d.device, dtype=torch.int32).contiguous()
    v = _flat_f32(values, torch, "values")
    if i.numel() != v.numel():
        raise TaskcodecError("one value per index")
    with torch.cuda.device(d.device):
        _core.cuda_scatter_add(d.data_ptr(), d.numel(), i.data_ptr() if i.numel() else 0,
                               v.data_ptr() if v.numel() else 0, i.numel(), float(scale),
                               _device.stream_handle(d.device))


class DeviceRound:
    """The array operations of one compressor round, on a CUDA device (the host twin is
    :class:`taskcodec.fl.compressor.HostRound`): selection and error feedback run on the
    device, only the ``k`` sent values and indices come to the host to be coded."""

    def __init__(self) -> None:
        self.torch = _device.require_cuda()

    def flat(self, tensor: Any) -> Any:
        return _device.as_torch(tensor).detach().reshape(-1).to(self.torch.float32).contiguous()

    def sum_of_squares(self, f: Any) -> float:
        return float(self.torch.dot(f.double(), f.double()))

    def scaled(self, f: Any, s: np.float32) -> Any:
        return f * float(s)

    def state(self, x: Any, like: Any) -> Any:
        """A float32 state tensor on like's device (zeros when absent)."""
        torch = self.torch
        if x is None:
            return torch.zeros(like.numel(), dtype=torch.float32, device=like.device)
        if isinstance(x, np.ndarray):
            return torch.from_numpy(np.ascontiguousarray(x, np.float32).reshape(-1)).to(like.device)
        return x.to(device=like.device, dtype=torch.float32).reshape(-1).contiguous()

    def add_momentum(self, vel: Any, momentum: float, f: Any) -> None:
        vel.mul_(float(np.float32(momentum)))
        vel.add_(f)

    def select_and_code(self, src: Any, residual: Any, k: int, coding: int, block_log2: int, levels: int,
                        seed: int, stream: int, threads: int) -> Tuple[bytes, Any]:
        idx, val = topk(src, k, residual=residual)
        rec, deq = _core.sparse_encode_selected(
            idx.cpu().numpy().view(np.uint32), val.cpu().numpy(), src.numel(), coding, block_log2,
            levels, seed, stream,
        )
        if residual is not None and k:
            residual_subtract(residual, idx, self.torch.from_numpy(deq).to(src.device))
        return rec, idx

    def zero_at(self, vel: Any, sent: Any) -> None:
        if sent.numel():
            vel[sent.long()] = 0.0
