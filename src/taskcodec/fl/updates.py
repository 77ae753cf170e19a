"""What an update is: a tensor, a mapping of named tensors or a Flower ``ArrayRecord``, held as
numpy arrays, torch tensors (CPU or CUDA) or DLPack device arrays. Flattened here once, so the
compressor and the frame reader agree on names, shapes, dtypes and the library to give back."""

from __future__ import annotations

import dataclasses
from typing import Any, List, Mapping, Union

import numpy as np

from taskcodec import _device
from taskcodec.errors import ArgumentTypeError, TaskcodecError

__all__ = ["Update", "Flat", "flatten", "is_array_record"]

Update = Union[np.ndarray, Mapping[str, Any], Any]


@dataclasses.dataclass
class Flat:
    """An update taken apart: its container kind (``"tensor"``, ``"dict"``, ``"arrayrecord"``),
    the library of its tensors (``"numpy"`` or ``"torch"``), and per tensor its name, shape,
    dtype name and the tensor itself, as given (no copy, no host transfer)."""

    kind: str
    lib: str
    names: List[str]
    shapes: List[List[int]]
    dtypes: List[str]
    tensors: List[Any]
    on_device: bool


def is_array_record(x: Any) -> bool:
    return type(x).__name__ == "ArrayRecord" and type(x).__module__.startswith("flwr")


def _is_tensor(x: Any) -> bool:
    return isinstance(x, np.ndarray) or _device.is_torch(x) or _device.is_device_array(x)


def flatten(update: Update) -> Flat:
    """Names, shapes, dtypes and tensors of an update, checked (unique names, numeric dtypes)."""
    if is_array_record(update):
        names = list(update.keys())
        kind, tensors = "arrayrecord", [_device.as_numpy(update[n], n) for n in names]
    elif isinstance(update, Mapping):
        names = [str(n) for n in update.keys()]
        kind = "dict"
        tensors = [v if _is_tensor(v) else _device.as_numpy(v, n) for n, v in zip(names, update.values())]
    elif _is_tensor(update):
        kind, names, tensors = "tensor", [""], [update]
    else:
        raise ArgumentTypeError(
            f"update must be an array, a torch tensor, a mapping of them or a Flower ArrayRecord; "
            f"got {type(update).__name__}"
        )
    if len(set(names)) != len(names):
        raise TaskcodecError("tensor names must be unique")
    dtypes = []
    for n, t in zip(names, tensors):
        if isinstance(t, np.ndarray):
            name, numeric = str(t.dtype), t.dtype.kind in "fiub"
        else:
            tt = _device.as_torch(t)
            name, numeric = _device.dtype_name(tt), not tt.dtype.is_complex
        if not numeric:
            raise TaskcodecError(f"tensor {n!r} has dtype {name}; only numeric tensors are compressed")
        dtypes.append(name)
    torch_like = [_device.is_torch(t) or _device.is_device_array(t) for t in tensors]
    on_device = bool(tensors) and all(_device.is_device_array(t) for t in tensors)
    lib = "torch" if kind != "arrayrecord" and tensors and all(torch_like) else "numpy"
    shapes = [[int(s) for s in t.shape] for t in tensors]
    return Flat(kind, lib, names, shapes, dtypes, tensors, on_device)
