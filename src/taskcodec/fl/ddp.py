"""A torch DDP communication hook that sends top-k sparse, coded gradients.

Usage (the state/hook pair of :mod:`torch.distributed.algorithms.ddp_comm_hooks`)::

    from taskcodec.fl.ddp import TopKState, topk_hook
    state = TopKState(process_group=None, ratio=0.01, values="float16", start_iter=100)
    model.register_comm_hook(state, topk_hook)

For the first ``start_iter`` iterations the hook is a plain averaging all-reduce (like
PowerSGD's ``start_powerSGD_iter``: early gradients change fast and error feedback has no
history yet). After that each rank compresses its bucket with a per-bucket
:class:`~taskcodec.fl.TopKCompressor` (error feedback keeps what was not sent), all-gathers
the frames (their lengths first, then the bytes), decodes and accumulates every rank's frame
with weight ``1 / world_size``, and returns the averaged dense bucket. Every rank decodes the
same frames in the same order, so all ranks get bit-identical gradients.
"""

from typing import Any, Dict, Optional

import numpy as np
import torch
import torch.distributed as dist

import taskcodec._core as _core
from taskcodec.errors import TaskcodecError
from taskcodec.fl.coding import DEFAULT_RATIO, DEFAULT_VALUES
from taskcodec.fl.compressor import TopKCompressor

__all__ = ["TopKState", "topk_hook"]


class TopKState:
    """State of :func:`topk_hook`: settings, the iteration counter and per-bucket residuals.

    Args:
        process_group: the group to communicate in (None: the default group).
        ratio: fraction of each bucket sent (the compressor's default).
        values: value coding (see :data:`taskcodec.fl.VALUE_CODINGS`; the compressor's default,
            ``taskcodec.fl.DEFAULT_VALUES``).
        start_iter: iterations of plain all-reduce before compression starts.
        error_feedback: keep the unsent part for the next iteration (recommended).
        **compressor_args: further :class:`~taskcodec.fl.TopKCompressor` options.
    """

    __slots__ = ("process_group", "ratio", "values", "start_iter", "error_feedback", "compressor_args",
                 "iter", "compressors", "bytes_sent")

    def __init__(self, process_group: Optional[Any] = None, ratio: float = DEFAULT_RATIO,
                 values: str = DEFAULT_VALUES, start_iter: int = 10, error_feedback: bool = True,
                 **compressor_args: Any) -> None:
        if start_iter < 0:
            raise TaskcodecError(f"start_iter must be >= 0, got {start_iter}")
        TopKCompressor(ratio, values, error_feedback, **compressor_args)  # validates the settings
        self.process_group = process_group
        self.ratio = float(ratio)
        self.values = values
        self.start_iter = int(start_iter)
        self.error_feedback = bool(error_feedback)
        self.compressor_args = dict(compressor_args)
        self.iter = 0
        self.compressors: Dict[int, TopKCompressor] = {}
        self.bytes_sent = 0  # by this rank, compressed frames only

    def compressor(self, index: int, size: Optional[int] = None) -> TopKCompressor:
        """The compressor of bucket ``index``; a fresh one when the bucket now holds ``size``
        elements and its residual another number (DDP rebuilds its buckets after the first
        iteration: the old residual belongs to other parameters)."""
        c = self.compressors.get(index)
        held = None if c is None else c.residuals.get("")
        if c is not None and size is not None and held is not None and held.size != size:
            c = None
        if c is None:
            c = TopKCompressor(self.ratio, self.values, self.error_feedback, **self.compressor_args)
            self.compressors[index] = c
        return c

    def __getstate__(self) -> Dict[str, Any]:  # checkpointing: everything but the group
        return {k: getattr(self, k) for k in self.__slots__ if k != "process_group"}

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self.process_group = None
        for k, v in state.items():
            setattr(self, k, v)


def _all_gather_bytes(blob: bytes, group: Any, world: int) -> list:
    n = torch.tensor([len(blob)], dtype=torch.int64)
    sizes = [torch.zeros(1, dtype=torch.int64) for _ in range(world)]
    dist.all_gather(sizes, n, group=group)
    longest = int(max(s.item() for s in sizes))
    mine = torch.zeros(longest, dtype=torch.uint8)
    mine[: len(blob)] = torch.frombuffer(bytearray(blob), dtype=torch.uint8)
    bufs = [torch.empty(longest, dtype=torch.uint8) for _ in range(world)]
    dist.all_gather(bufs, mine, group=group)
    return [b[: int(s.item())].numpy().tobytes() for b, s in zip(bufs, sizes)]


# No postponed annotations in this module: DDP checks the hook's annotations at registration.
def topk_hook(state: TopKState, bucket: dist.GradBucket) -> torch.futures.Future[torch.Tensor]:
    """DDP comm hook: averaged gradients from top-k sparse, coded frames of every rank."""
    group = state.process_group if state.process_group is not None else dist.group.WORLD
    world = dist.get_world_size(group)
    buf = bucket.buffer()
    compressing = state.iter >= state.start_iter
    if bucket.is_last():
        state.iter += 1
    if not compressing:
        buf.div_(world)
        fut = dist.all_reduce(buf, group=group, async_op=True).get_future()
        return fut.then(lambda f: f.value()[0])
    grad = buf.detach().to("cpu", torch.float32).contiguous().numpy().reshape(-1)
    blob = state.compressor(bucket.index(), grad.size).compress(grad)
    state.bytes_sent += len(blob)
    frames = _all_gather_bytes(blob, group, world)
    dense = np.zeros(grad.size, np.float32)
    for f in frames:  # same frames, same order on every rank
        _core.sparse_accumulate(f, [dense], 1.0 / world, 1, grad.size)
    buf.copy_(torch.from_numpy(dense).view_as(buf))
    fut: torch.futures.Future = torch.futures.Future()
    fut.set_result(buf)
    return fut
