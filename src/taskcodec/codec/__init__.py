"""numpy-level codec API: CdfTable, encode / decode, frame headers."""

from taskcodec.codec.frame import (
    DEFAULT_CHUNK_SIZE,
    DEFAULT_LANES,
    DEFAULT_MAX_SYMBOLS,
    FrameInfo,
    FrameKind,
    decode,
    encode,
    read_header,
)
from taskcodec.codec.table import CdfTable
from taskcodec.codec.cuda import decode_batch, dequantize, quantize

__all__ = [
    "CdfTable",
    "encode",
    "decode",
    "read_header",
    "FrameInfo",
    "FrameKind",
    "DEFAULT_MAX_SYMBOLS",
    "DEFAULT_LANES",
    "DEFAULT_CHUNK_SIZE",
    "quantize",
    "dequantize",
    "decode_batch",
]
