"""``edgevit export`` as one call: the ONNX export, then the precision graphs with their accuracy
gate (:func:`edgevit.precision.quantize`), then a TensorRT engine (:func:`edgevit.tensorrt.build.build_engine`)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from .onnx import ExportConfig, ExportResult, export_onnx


@dataclass
class ExportPipelineResult:
    """What :func:`export_pipeline` wrote: the export, the precision graphs (None when only fp32
    was asked for) and the engine (None when not asked for, or when the gate failed)."""

    export: ExportResult
    quantize: object | None = None  # edgevit.precision.QuantizeResult
    engine: object | None = None  # edgevit.tensorrt.build.EngineBuildResult

    @property
    def ok(self) -> bool:
        """Whether every precision graph passed its gate (True without precision graphs)."""
        return self.quantize is None or self.quantize.ok

    def to_dict(self) -> dict:
        data = self.export.to_dict()
        if self.quantize is not None:
            data = {**data, "ok": self.ok, "quantize": self.quantize.to_dict()}
        if self.engine is not None:
            data["engine"] = self.engine.to_dict()
        return data


def export_pipeline(source, outdir: str | os.PathLike, config: ExportConfig | None = None, *, quantize=None,
                    engine: bool = False, arch: str | None = None, force: bool = False,
                    model_overrides: dict | None = None) -> ExportPipelineResult:
    """Export ``source`` to ``outdir`` (:func:`export_onnx`); with ``quantize`` (an
    :class:`edgevit.precision.QuantizeConfig`), write and gate its precision graphs beside the
    export; with ``engine``, build ``outdir``/:func:`edgevit.formats.engine_file` from the fp32
    graph once every gate passed. TensorRT's absence (``engine``) is reported before the export starts."""
    from ..formats import engine_file
    from ..precision import quantize as quantize_graphs
    from ..tensorrt._bindings import import_tensorrt
    from ..tensorrt.build import build_engine

    if engine:
        import_tensorrt()
    result = ExportPipelineResult(export_onnx(source, outdir, config, arch=arch, force=force,
                                              model_overrides=model_overrides))
    if quantize is not None:
        result.quantize = quantize_graphs(outdir, quantize, force=force)
    if engine and result.ok:
        result.engine = build_engine(outdir, os.path.join(outdir, engine_file()), force=force)
    return result


__all__ = ["ExportPipelineResult", "export_pipeline"]
