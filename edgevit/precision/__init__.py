"""Precision: the fp16, bf16, int8 and fp8 graphs of an exported fp32 ``model.onnx``, each gated on data.

    from edgevit.precision import QuantizeConfig, quantize
    result = quantize("out", QuantizeConfig(precisions=("fp16", "int8")))

- :mod:`~edgevit.precision.recipe`: what decides one precision graph (:class:`PrecisionRecipe`) and which
  nodes it quantizes;
- :mod:`~edgevit.precision.graphs`: the graph rewriting (casts for fp16/bf16, Q/DQ for int8/fp8);
- :mod:`~edgevit.precision.calibration`: calibration data, methods and the amax cache for int8/fp8;
- :mod:`~edgevit.precision.gate`: the accuracy gate, per-layer sensitivity and auto-exclude;
- :mod:`~edgevit.precision.pipeline`: :func:`quantize`, which builds, gates and records them all.

Imports the bottom layer (formats, tolerances, metrics, manifest), data, export and the runtime's
ONNX Runtime runner (to run the graphs it judges); never verify or bench.
"""

from .graphs import build_precision_graph, qdq_summary
from .pipeline import QuantizeConfig, QuantizeResult, quantize
from .recipe import PrecisionRecipe, quantizable_nodes, recipe_from_dict

__all__ = ["PrecisionRecipe", "QuantizeConfig", "QuantizeResult", "build_precision_graph", "qdq_summary",
           "quantizable_nodes", "quantize", "recipe_from_dict"]
