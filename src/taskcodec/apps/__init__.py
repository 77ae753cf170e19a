"""Programs built on the public API: the ``taskcodec`` command line and its demos.

* :mod:`~taskcodec.apps.cli` — the ``taskcodec`` console script (also ``python -m taskcodec``).
* :mod:`~taskcodec.apps.pipeline_demo` — ``taskcodec demo``: device, edge and cloud on loopback.
* :mod:`~taskcodec.apps.codec_demo` — ``taskcodec codec-demo``: MobileNetV2 activations coded
  at a cut with :class:`taskcodec.nn.FeatureCodec`.

Nothing in the library imports this package.
"""
