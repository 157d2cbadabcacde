"""TensorRT's ONNX operator table: ``tensorrt_onnx_ops.json`` (beside this module; it names its
source, onnx-tensorrt ``docs/operators.md`` at a commit, and the TensorRT version) and the
lookup of one op's support and restrictions for a TensorRT version. :mod:`edgevit.export.lint`
checks graphs against it.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

# The ONNX forms attention is exported in (edgevit export --attention); here, torch-free, so the CLI can offer them.
ATTENTION_FORMS = ("decomposed", "fused")
DEFAULT_ATTENTION = "decomposed"

DEFAULT_TENSORRT_VERSION = "10.3"


@lru_cache(maxsize=1)
def tensorrt_op_table() -> dict:
    """The parsed ``tensorrt_onnx_ops.json`` (op table, source, version, later additions)."""
    text = resources.files("edgevit.export").joinpath("tensorrt_onnx_ops.json").read_text()
    return json.loads(text)


def version(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in str(text).split("."))
    except ValueError:
        raise ValueError(f"TensorRT version must look like '10.3', got {text!r}") from None


def tensorrt_op_support(op: str, tensorrt_version: str = DEFAULT_TENSORRT_VERSION) -> dict:
    """``{"supported": bool, "restrictions": str|None, "added_in": str|None}`` for a default-domain op."""
    table = tensorrt_op_table()
    target = version(tensorrt_version)
    later = table["later_additions"].get(op)
    if later and target >= version(later["added_in"]):
        return {"supported": True, "restrictions": later.get("restrictions"), "added_in": later["added_in"]}
    entry = table["ops"].get(op)
    if entry is None:
        return {"supported": False, "restrictions": None, "added_in": later["added_in"] if later else None,
                "known": False}
    restrictions = entry.get("restrictions")
    change = table.get("restriction_changes", {}).get(op)
    if restrictions and change and target >= version(change["tensorrt_version"]):
        restrictions = None
    return {"supported": bool(entry["supported"]), "restrictions": restrictions,
            "added_in": later["added_in"] if later else None, "known": True}


__all__ = ["DEFAULT_TENSORRT_VERSION", "tensorrt_op_support", "tensorrt_op_table", "version"]
