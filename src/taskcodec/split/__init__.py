"""Split a model between a device and an edge server (needs torch: ``pip install taskcodec[nn]``).

* :func:`partition` — ``(head, tail)`` with ``tail(head(x)) == model(x)`` exactly.
* :func:`profile` — per-cut head/tail latency, activation shape and bytes, FLOPs
  (:mod:`~taskcodec.split.profiling`).
* :func:`choose` — the cost model (:mod:`~taskcodec.split.cost`): the cut and codec rate (bits
  per element) minimising device + transfer + edge time for a :class:`Link` (kB/s, 1 kB =
  1000 B; Neurosurgeon's rule), as a :class:`Choice` of :class:`SplitOption` with printable
  reasoning.
"""

from taskcodec.errors import SplitError
from taskcodec.split.cost import (
    DEVICE_ONLY,
    EDGE_ONLY,
    Choice,
    CodecRate,
    Link,
    SplitOption,
    choose,
)
from taskcodec.split.partition import cut_points, partition
from taskcodec.split.profiling import CutProfile, Profile, profile

__all__ = [
    "partition",
    "cut_points",
    "SplitError",
    "profile",
    "choose",
    "Link",
    "Profile",
    "CutProfile",
    "CodecRate",
    "SplitOption",
    "Choice",
    "EDGE_ONLY",
    "DEVICE_ONLY",
]
