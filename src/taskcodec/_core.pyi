"""Type stubs for taskcodec's compiled core (private; use the taskcodec package)."""

from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import numpy.typing as npt

__version__: str
FORMAT_VERSION: int
has_cuda: bool
ROW_SINGLE: int
ROW_INDEX: int
DEFAULT_LANES: int
DEFAULT_CHUNK_SIZE: int
DEFAULT_MAX_SYMBOLS: int
MAX_LANES: int
MAX_PRECISION: int

def status_name(code: int) -> str: ...

class Table:
    @staticmethod
    def from_pmf(
        pmf: npt.NDArray[np.float64],
        offsets: npt.NDArray[np.int32],
        precision: int,
        lengths: Optional[npt.NDArray[np.uint32]] = None,
        escape: Optional[npt.NDArray[np.float64]] = None,
        trim_tails: bool = False,
    ) -> "Table": ...
    @staticmethod
    def from_freqs(
        freqs: npt.NDArray[np.uint32],
        offsets: npt.NDArray[np.int32],
        lengths: npt.NDArray[np.uint32],
        precision: int,
    ) -> "Table": ...
    @staticmethod
    def from_bytes(data: Any) -> "Table": ...
    def to_bytes(self) -> bytes: ...
    @property
    def fingerprint(self) -> int: ...
    @property
    def precision(self) -> int: ...
    @property
    def num_rows(self) -> int: ...
    @property
    def max_length(self) -> int: ...
    @property
    def offsets(self) -> npt.NDArray[np.int32]: ...
    @property
    def lengths(self) -> npt.NDArray[np.uint32]: ...
    @property
    def freqs(self) -> npt.NDArray[np.uint32]: ...

def encode(
    symbols: Any,
    table: Table,
    row_mode: int,
    index: Optional[npt.NDArray[np.int32]],
    meta: bytes,
    lanes: int,
    chunk_size: int,
    checksum: bool,
    threads: int,
    kind: int,
) -> bytes: ...
def decode(
    blob: Any,
    table: Table,
    index: Optional[npt.NDArray[np.int32]],
    max_symbols: int,
    threads: int,
    out: Optional[npt.NDArray[np.int32]] = None,
) -> npt.NDArray[np.int32]: ...
def read_header(blob: Any, max_symbols: int) -> Dict[str, Any]: ...

# ---- sparse updates (taskcodec.fl; docs/format.md section 21) ----
SKETCH_MAX_ROWS: int
SPARSE_DEFAULT_MAX_TENSORS: int
SPARSE_DEFAULT_MAX_ELEMENTS: int

def topk_count(n: int, ratio: float) -> int: ...
def topk_select(x: npt.NDArray[np.float32], k: int, threads: int = 0) -> npt.NDArray[np.uint32]: ...
def sparse_encode_values(
    values: npt.NDArray[np.float32], coding: int, block_log2: int, levels: int, seed: int, stream: int
) -> Tuple[bytes, npt.NDArray[np.float32]]: ...
def sparse_compress_tensor(
    update: npt.NDArray[np.float32],
    residual: Optional[npt.NDArray[np.float32]],
    k: int,
    coding: int,
    block_log2: int,
    levels: int,
    seed: int,
    stream: int,
    threads: int = 0,
) -> Tuple[bytes, npt.NDArray[np.uint32]]: ...
def sparse_write_frame(records: List[bytes], meta: bytes, checksum: bool) -> bytes: ...
def sparse_read(blob: Any, max_tensors: int, max_elements: int) -> Tuple[bytes, List[Dict[str, Any]], bool]: ...
def sparse_decode(
    blob: Any, max_tensors: int, max_elements: int
) -> List[Tuple[npt.NDArray[np.uint32], npt.NDArray[np.float32]]]: ...
def sparse_accumulate(
    blob: Any, dense: List[npt.NDArray[np.float32]], weight: float, max_tensors: int, max_elements: int
) -> None: ...
def sparse_encode_selected(
    indices: npt.NDArray[np.uint32],
    values: npt.NDArray[np.float32],
    n: int,
    coding: int,
    block_log2: int,
    levels: int,
    seed: int,
    stream: int,
) -> Tuple[bytes, npt.NDArray[np.float32]]: ...
def sketch_accumulate(
    x: npt.NDArray[np.float32], table: npt.NDArray[np.float32], rows: int, cols: int, seed: int, threads: int = 0
) -> None: ...
def sketch_query(
    table: npt.NDArray[np.float32], n: int, rows: int, cols: int, seed: int, threads: int = 0
) -> npt.NDArray[np.float32]: ...

# ---- CUDA (taskcodec.codec.gpu, taskcodec.fl.gpu; docs/gpu.md) ----
# Device buffers and CUDA streams travel as integer addresses. Without the CUDA kernels only
# cuda_available exists (and answers False); the other names below are absent.

def cuda_available() -> bool: ...
def cuda_device_name(device: int = 0) -> str: ...

class DeviceTable:
    def __init__(self, table: Table, device: int) -> None: ...
    @property
    def device(self) -> int: ...
    @property
    def fingerprint(self) -> int: ...
    @property
    def nbytes(self) -> int: ...

def cuda_encode(
    table: DeviceTable,
    symbols: int,
    dtype: int,
    shape: List[int],
    row_mode: int,
    index_dev: int,
    index_host: Optional[npt.NDArray[np.int32]],
    meta: bytes,
    lanes: int,
    chunk_size: int,
    checksum: bool,
    stream: int,
) -> Tuple[bytes, float]: ...
def cuda_decode(
    table: DeviceTable,
    frames: List[Any],
    outs: List[int],
    index_devs: List[int],
    index_hosts: List[Optional[npt.NDArray[np.int32]]],
    frame_devs: List[int],
    max_symbols: int,
    stream: int,
) -> Tuple[float, List[int]]: ...
def cuda_quantize(
    x: int, n: int, inner: int, channels: int, inv_step: int, zero: int, q: int, stream: int
) -> None: ...
def cuda_dequantize(
    q: int, n: int, inner: int, channels: int, step: int, zero: int, x: int, stream: int
) -> None: ...
def cuda_topk(update: int, residual: int, n: int, k: int, idx: int, val: int, stream: int) -> float: ...
def cuda_residual_subtract(residual: int, idx: int, sent: int, k: int, stream: int) -> None: ...
def cuda_scatter_add(dense: int, n: int, idx: int, val: int, k: int, scale: float, stream: int) -> None: ...
