"""Split a model between a device and an edge server (needs torch: ``pip install taskcodec[nn]``).

* :func:`partition` — ``(head, tail)`` with ``tail(head(x)) == model(x)`` exactly.
* :func:`profile` — per-cut head/tail latency, activation shape and bytes, FLOPs.
* :func:`choose` — the cut and codec rate minimising device + transfer + edge time for a
  :class:`Link` (Neurosurgeon's rule), with printable reasoning.
"""

from taskcodec.split.partition import SplitError, cut_points, partition
from taskcodec.split.planner import (
    DEVICE_ONLY,
    EDGE_ONLY,
    Choice,
    CutProfile,
    Link,
    Option,
    Profile,
    choose,
    profile,
)

__all__ = [
    "partition",
    "cut_points",
    "SplitError",
    "profile",
    "choose",
    "Link",
    "Profile",
    "CutProfile",
    "Option",
    "Choice",
    "EDGE_ONLY",
    "DEVICE_ONLY",
]
