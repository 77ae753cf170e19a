"""Make a CompressAI model's entropy models code through taskcodec instead of CompressAI's coder.

One line, after ``model.update()``::

    tc.nn.use_taskcodec(model)          # every EntropyBottleneck / GaussianConditional inside

``model.compress(x)`` / ``model.decompress(strings, shape)`` keep their signatures and
results: the quantized symbols, CDF tables and indexes are CompressAI's own (its integer
16-bit CDFs become a :class:`taskcodec.CdfTable` with :meth:`~taskcodec.CdfTable.from_freqs`,
unchanged), so the decoded tensors are identical to CompressAI's; only the bytes differ: each
string is a taskcodec frame (rANS over numpy buffers with no Python lists, a header, CRC32C).
Out-of-range values are escaped losslessly, as CompressAI's coder does.

How: each entropy model instance gets a subclass whose MRO puts a coding mixin between the
model's class and ``compressai.entropy_models.EntropyModel``, so that ``EntropyBottleneck``'s
own ``compress(x)`` (which builds indexes and medians, then calls ``super().compress``) lands
in taskcodec's coder. ``GaussianMixtureConditional`` (its own coding loop) is left as is.
"""

from __future__ import annotations

from typing import Any, List, Optional

import numpy as np
import torch
from torch import nn

import taskcodec as tc
from taskcodec.errors import ArgumentTypeError, TaskcodecError

__all__ = ["use_taskcodec"]


class _TaskcodecCoding:
    """Coding methods replacing ``EntropyModel.compress`` / ``decompress`` with taskcodec frames
    (mixed in as a subclass of ``EntropyModel``, see :func:`_mixin`)."""

    _tc_cache: Any = None

    def taskcodec_table(self) -> tc.CdfTable:
        """CompressAI's quantized CDFs of this entropy model as a :class:`taskcodec.CdfTable`."""
        cdf = self._quantized_cdf  # type: ignore[attr-defined]
        if cdf.numel() == 0:
            raise TaskcodecError("the CompressAI model has no CDF tables yet: call model.update() first")
        key = (cdf.data_ptr(), cdf._version, tuple(cdf.shape), self._offset.data_ptr(),  # type: ignore[attr-defined]
               self._offset._version, self._cdf_length._version)  # type: ignore[attr-defined]
        if self._tc_cache is None or self._tc_cache[0] != key:
            c = cdf.cpu().numpy().astype(np.int64)
            lengths = self._cdf_length.cpu().numpy().astype(np.int64) - 2  # type: ignore[attr-defined]
            freqs = np.zeros((c.shape[0], int(lengths.max()) + 1), dtype=np.int64)
            for r in range(c.shape[0]):
                n = int(lengths[r])
                freqs[r, : n + 1] = np.diff(c[r, : n + 2])  # n symbols + CompressAI's overflow bin
            table = tc.CdfTable.from_freqs(freqs, self._offset.cpu().numpy(),  # type: ignore[attr-defined]
                                           int(self.entropy_coder_precision), lengths=lengths)  # type: ignore[attr-defined]
            self._tc_cache = (key, table)
        return self._tc_cache[1]

    def compress(self, inputs: torch.Tensor, indexes: torch.Tensor,  # type: ignore[override]
                 means: Optional[torch.Tensor] = None) -> List[bytes]:
        if inputs.dim() < 2:
            raise TaskcodecError("Invalid `inputs` size. Expected a tensor with at least 2 dimensions.")
        if inputs.size() != indexes.size():
            raise TaskcodecError("`inputs` and `indexes` should have the same size.")
        symbols = self.quantize(inputs, "symbols", means)  # type: ignore[attr-defined]
        table = self.taskcodec_table()
        sym = symbols.to(torch.int32).cpu().numpy()
        idx = indexes.to(torch.int32).cpu().numpy()
        return [tc.encode(sym[i], table, index=idx[i], lanes=_lanes(sym[i].size))
                for i in range(sym.shape[0])]

    def decompress(self, strings: List[bytes], indexes: torch.Tensor,  # type: ignore[override]
                   dtype: torch.dtype = torch.float, means: Optional[torch.Tensor] = None) -> torch.Tensor:
        if not isinstance(strings, (tuple, list)) or len(strings) != indexes.size(0):
            raise TaskcodecError("Invalid strings or indexes parameters")
        table = self.taskcodec_table()
        idx = indexes.to(torch.int32).cpu().numpy()
        out = np.stack([tc.decode(s, table, index=idx[i]) for i, s in enumerate(strings)])
        outputs = torch.from_numpy(out).to(self._quantized_cdf.device)  # type: ignore[attr-defined]
        return self.dequantize(outputs, means, dtype)  # type: ignore[attr-defined]


def _lanes(n: int) -> int:
    """32 interleaved states for large tensors, fewer for small ones (each flushes 4 bytes)."""
    lanes = 1
    while lanes < 32 and n >= 1024 * lanes:
        lanes *= 2
    return lanes


_MIXIN: Any = None
_CLASSES: dict = {}


def _mixin() -> Any:
    """``TaskcodecCoding(_TaskcodecCoding, EntropyModel)``, built on first use (imports compressai)."""
    global _MIXIN
    if _MIXIN is None:
        from compressai.entropy_models import EntropyModel

        _MIXIN = type("TaskcodecCoding", (_TaskcodecCoding, EntropyModel), {"__module__": __name__})
    return _MIXIN


def _adapt(module: nn.Module) -> bool:
    from compressai.entropy_models import EntropyModel, GaussianMixtureConditional

    mixin = _mixin()
    if not isinstance(module, EntropyModel) or isinstance(module, (mixin, GaussianMixtureConditional)):
        return False
    cls = type(module)
    if cls not in _CLASSES:  # MRO: cls, ..., TaskcodecCoding, EntropyModel: super() from cls lands here
        _CLASSES[cls] = type(f"Taskcodec{cls.__name__}", (cls, mixin), {"__module__": __name__})
    module.__class__ = _CLASSES[cls]
    return True


def use_taskcodec(model: nn.Module) -> nn.Module:
    """Make every CompressAI entropy model inside ``model`` code through taskcodec (in place).

    Works on a whole ``compressai.models.CompressionModel`` or a single entropy model; returns
    ``model`` so it chains (``net = tc.nn.use_taskcodec(net)``). Call ``model.update()``
    before compressing, as with CompressAI alone. Raises ``TypeError`` when ``model`` holds no
    entropy model it can adapt.
    """
    mods = [model] + [m for _, m in model.named_modules() if m is not model]
    changed = sum(_adapt(m) for m in mods)
    already = any(isinstance(m, _mixin()) for m in mods)
    if not changed and not already:
        raise ArgumentTypeError(f"{type(model).__name__} holds no CompressAI EntropyBottleneck / GaussianConditional")
    return model
