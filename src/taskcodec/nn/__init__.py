"""torch modules for task-oriented feature compression (``pip install taskcodec[nn]``).

* :class:`FeatureCodec` — post-training: calibrate on sample activations, then
  ``compress(tensor) -> bytes`` / ``decompress(bytes) -> tensor``.
"""

from taskcodec.nn.feature_codec import FeatureCodec

__all__ = ["FeatureCodec"]
