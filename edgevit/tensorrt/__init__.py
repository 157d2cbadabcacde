"""edgevit's TensorRT layer, one job per module (importing this package imports no tensorrt):

================  ===================================================================================
module            job
================  ===================================================================================
``rules``         pure decisions: versions, build mode, DLA, hardware compatibility, profile,
                  engine compatibility, cuda-python pinning (no tensorrt; tested on CPU)
``record``        ``EngineRecord``: the build facts an engine's manifest entry records (written by ``build``)
``fusion``        the engine inspector's report: fused attention per block, precision, DLA placement
``jetson``        L4T / JetPack release, board model, nvpmodel and jetson_clocks
``_bindings``     the lazy ``tensorrt`` / ``cuda.bindings`` imports with install advice
``build``         build and inspect a plan; ``build_engine`` behind ``edgevit build`` / ``export --engine``
``session``       execution: the machine's facts and ``EngineSession`` (one context, one stream)
================  ===================================================================================

:mod:`edgevit.runtime.tensorrt_runner` is the runner adapter over ``session``; TensorRT errors
(``TensorRTError``, ``EngineMismatchError``) are in :mod:`edgevit.errors`.
"""
