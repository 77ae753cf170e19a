"""numpy-level codec API: CdfTable and its fitter, the quantizer, encode / decode, frame headers.

Modules: :mod:`~taskcodec.codec.header` (what a frame says about itself),
:mod:`~taskcodec.codec.rows` (which table row codes each symbol), :mod:`~taskcodec.codec.table`
(integer CDF tables, fitted from histograms), :mod:`~taskcodec.codec.quant` (the per-channel
quantizer and its meta block), :mod:`~taskcodec.codec.frame` (encode / decode) and
:mod:`~taskcodec.codec.gpu` (the same on CUDA devices).
"""

from taskcodec.codec.frame import decode, encode
from taskcodec.codec.gpu import decode_batch
from taskcodec.codec.header import (
    DEFAULT_CHUNK_SIZE,
    DEFAULT_GPU_CHUNK_SIZE,
    DEFAULT_LANES,
    DEFAULT_MAX_SYMBOLS,
    FrameInfo,
    FrameKind,
    read_header,
)
from taskcodec.codec.quant import dequantize, quantize
from taskcodec.codec.table import CdfTable, fit_table

__all__ = [
    "CdfTable",
    "fit_table",
    "encode",
    "decode",
    "read_header",
    "FrameInfo",
    "FrameKind",
    "DEFAULT_MAX_SYMBOLS",
    "DEFAULT_LANES",
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_GPU_CHUNK_SIZE",
    "quantize",
    "dequantize",
    "decode_batch",
]
