"""torch modules for task-oriented feature compression (``pip install taskcodec[nn]``).

* :class:`FeatureCodec` — post-training: calibrate on sample activations, then
  ``compress(tensor) -> bytes`` / ``decompress(bytes) -> tensor``.
* :class:`TaskBottleneck` — learned: encoder → quantizer → CompressAI ``EntropyBottleneck``
  → decoder, trained with :func:`train_bottleneck` (task loss + λ · bits), coded through
  taskcodec's frames.
* :class:`SplitCodec` — the model's head, a learned bottleneck that starts as the
  FeatureCodec transform, the model's tail: ``fit`` (distillation, :mod:`~taskcodec.nn.distill`),
  ``encode(x) -> bytes``, ``decode(bytes) -> logits``, ``save`` / ``load``.
* :func:`use_taskcodec` — one line that makes a CompressAI model's entropy models code
  through taskcodec (same decoded tensors, faster).
* :func:`load_fashion_mnist` — the offline dataset loader the experiments use.
"""

from taskcodec.nn.bottleneck import (
    BottleneckOutput,
    TaskBottleneck,
    evaluate_bottleneck,
    lambda_sweep,
    train_bottleneck,
)
from taskcodec.nn.compressai_adapter import use_taskcodec
from taskcodec.nn.datasets import load_fashion_mnist
from taskcodec.nn.feature_codec import FeatureCodec
from taskcodec.nn.split_codec import SplitCodec

__all__ = [
    "FeatureCodec",
    "TaskBottleneck",
    "SplitCodec",
    "BottleneckOutput",
    "train_bottleneck",
    "evaluate_bottleneck",
    "lambda_sweep",
    "load_fashion_mnist",
    "use_taskcodec",
]
