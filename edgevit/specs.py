"""The typed sections of a manifest: the model section, tensor specs, the batch range and the preprocessing spec.

:class:`~edgevit.manifest.Manifest` parses its ``model``, ``inputs``/``outputs``, ``batch`` and
``preprocessing`` into these once, on load, and every layer reads them typed; ``to_dict`` writes
them back at the file boundary, unknown keys included. ``parse_batch`` reads ``--batch MIN,OPT,MAX``
(no torch). The image transforms that apply a :class:`Preprocessing` live in :mod:`edgevit.data`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from .errors import ManifestError
from .output_kinds import OutputKind, output_kind

INTERPOLATIONS = ("bicubic", "bilinear", "nearest")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INCEPTION_MEAN = (0.5, 0.5, 0.5)
INCEPTION_STD = (0.5, 0.5, 0.5)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # OpenAI CLIP's, also EVA-02's
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


# ---------------------------------------------------------------------------- JSON types
# The JSON types of the keys code reads, checked on load (:func:`check_json_type`): a damaged or hand-edited
# file is refused naming the file and the key, not met later as a TypeError. key: (types, item types);
# None allows null. Values (a precision's name, a path) are checked where they are interpreted.
_MANIFEST_TYPES = {"created": ((str, None), None), "model": ((dict, None), None), "labels": ((list, None), (str,)),
                   "preprocessing": ((dict, None), None), "inputs": ((list, None), (dict,)),
                   "outputs": ((list, None), (dict,)), "batch": ((dict, None), None), "export": ((dict, None), None),
                   "artifacts": ((list, None), (dict,)), "certificates": ((list, None), (dict,)), "versions": ((dict, None), None)}
_NESTED_TYPES = {"model": {"output": ((str, None), None), "config": ((dict, None), None),
                           "source": ((str, None), None), "source_sha256": ((str, None), None),
                           "source_absolute": ((str, None), None), "arch": ((str, None), None),
                           "overrides": ((dict, None), None)},
                 "batch": {"min": ((int,), None), "opt": ((int,), None), "max": ((int,), None),
                           "dynamic": ((bool,), None)},
                 "inputs": {"name": ((str,), None), "shape": ((list,), (int, str, None))},
                 "outputs": {"name": ((str,), None), "shape": ((list,), (int, str, None))}}
ARTIFACT_TYPES = {"path": ((str,), None), "format": ((str,), None), "precision": ((str,), None),
                   "sha256": ((str,), None), "size_bytes": ((int, None), None), "external_data": ((list, None), (str,))}
_JSON_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false", list: "a list",
               dict: "an object", type(None): "null"}  # what each Python type of json.loads is called in JSON


def check_json_type(value: Any, key: str, types: tuple, items: tuple | None = None) -> Any:
    """``value`` (of the manifest key ``key``) when its JSON type is one of ``types`` (None: null) and,
    for a list, each item's is one of ``items``; else ManifestError naming the key (a bool is no integer)."""
    def fits(v, allowed) -> bool:
        return any(v is None if t is None else isinstance(v, t) and (t is bool or not isinstance(v, bool))
                   for t in allowed)

    def name(allowed) -> str:
        return " or ".join(_JSON_NAMES[type(None) if t is None else t] for t in allowed)

    if not fits(value, types):
        raise ManifestError(f'"{key}" must be {name(types)}, got {_JSON_NAMES.get(type(value), type(value).__name__)} '
                            f"{json.dumps(value)[:40] if isinstance(value, (int, float, str)) else ''}".rstrip())
    for i, item in enumerate(value if items is not None and isinstance(value, list) else ()):
        if not fits(item, items):
            raise ManifestError(f'"{key}[{i}]" must be {name(items)}, got '
                                f"{_JSON_NAMES.get(type(item), type(item).__name__)}")
    return value


def check_json_types(data: dict) -> None:
    """Every key of a manifest's ``data`` that code reads has its JSON type (:func:`check_json_type`),
    the nested ones of ``model``, ``batch``, ``inputs`` and ``outputs`` included; ManifestError naming
    the first that has not."""
    for key, (types, items) in _MANIFEST_TYPES.items():
        check_json_type(data.get(key), key, types, items)
    for key, nested in _NESTED_TYPES.items():
        value = data.get(key)
        parts = [(key, value)] if isinstance(value, dict) else [(f"{key}[{i}]", v) for i, v in enumerate(value or [])]
        for where, part in parts:
            for sub, (types, items) in nested.items():
                if sub in part:
                    check_json_type(part[sub], f"{where}.{sub}", types, items)


# ---------------------------------------------------------------------------- preprocessing
@dataclass(frozen=True)
class Preprocessing:
    """Resize (shorter side to size / crop_pct), center-crop to ``input_size``, scale to [0, 1]
    by ``1/pixel_max``, then normalize with ``mean`` and ``std`` per channel.

    ``input_size`` is (channels, height, width) as the model sees it.
    """

    input_size: tuple[int, int, int] = (3, 224, 224)
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    interpolation: str = "bicubic"
    crop_pct: float = 0.875
    pixel_max: float = 255.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_size", tuple(int(v) for v in self.input_size))
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        if len(self.input_size) != 3 or min(self.input_size) < 1:
            raise ValueError(f"input_size must be (channels, height, width), got {self.input_size}")
        channels = self.input_size[0]
        if len(self.mean) != channels or len(self.std) != channels:
            raise ValueError(
                f"mean and std need one value per channel ({channels}), got {self.mean} and {self.std}"
            )
        if any(s <= 0 for s in self.std):
            raise ValueError(f"std values must be > 0, got {self.std}")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {list(INTERPOLATIONS)}, got {self.interpolation!r}")
        if not 0 < self.crop_pct <= 1:
            raise ValueError(f"crop_pct must be in (0, 1], got {self.crop_pct}")

    @property
    def channels(self) -> int:
        return self.input_size[0]

    @property
    def image_size(self) -> int:
        return self.input_size[1]

    def to_dict(self) -> dict:
        """The spec as JSON writes it (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict) -> "Preprocessing":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    @classmethod
    def identity(cls, input_size) -> "Preprocessing":
        """The spec of arrays that already are model input of ``input_size`` (C, H, W): no scaling,
        no normalization, no crop."""
        channels = int(input_size[0])
        return cls(input_size=tuple(input_size), mean=(0.0,) * channels, std=(1.0,) * channels, pixel_max=1.0,
                   crop_pct=1.0)


def preprocessing_section(data: Any, key: str = "preprocessing") -> tuple[Preprocessing | None, dict]:
    """A manifest's ``preprocessing`` object as (spec or None, its unknown keys); ManifestError naming
    ``key`` for one that is no valid spec."""
    if not data:
        return None, {}
    known = {f.name for f in fields(Preprocessing)}
    try:
        spec = Preprocessing.from_dict(data)
    except (TypeError, ValueError) as exc:
        raise ManifestError(f'"{key}" is not a valid preprocessing spec ({exc})') from None
    return spec, {k: v for k, v in data.items() if k not in known}


# ---------------------------------------------------------------------------- batch range
DEFAULT_BATCH = (1, 1, 32)
"""The batch bounds (MIN, OPT, MAX) an export records for TensorRT profiles unless told (``edgevit export --batch``)."""


def check_batch_bounds(lo: int, opt: int, hi: int) -> None:
    """ValueError unless 1 <= MIN <= OPT <= MAX."""
    if not (1 <= lo <= opt <= hi):
        raise ValueError(f"batch bounds must satisfy 1 <= MIN <= OPT <= MAX, got MIN={lo}, OPT={opt}, MAX={hi}")


def parse_batch(text: str) -> tuple[int, int, int]:
    """``"1,8,32"`` -> (1, 8, 32): MIN,OPT,MAX with 1 <= MIN <= OPT <= MAX."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        raise ValueError(f"--batch must be MIN,OPT,MAX integers (e.g. 1,8,32), got {text!r}") from None
    if len(values) != 3:
        raise ValueError(f"--batch must be three integers MIN,OPT,MAX (e.g. 1,8,32), got {text!r}")
    check_batch_bounds(*values)
    return values  # type: ignore[return-value]


@dataclass(frozen=True)
class BatchRange:
    """The batch sizes a graph takes (the TensorRT optimization profile): 1 <= ``min`` <= ``opt`` <=
    ``max``. ``dynamic``: the graph's batch dim is symbolic (None where the file does not say: then
    ``max > min``). ``extra``: keys this edgevit does not know, written back as they were."""

    min: int
    opt: int
    max: int
    dynamic: bool | None = None
    extra: dict = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        check_batch_bounds(self.min, self.opt, self.max)

    @property
    def bounds(self) -> tuple[int, int, int]:
        """(MIN, OPT, MAX)."""
        return self.min, self.opt, self.max

    @property
    def is_dynamic(self) -> bool:
        """The recorded ``dynamic``, else whether the range spans more than one size."""
        return self.max > self.min if self.dynamic is None else self.dynamic

    def to_dict(self) -> dict:
        head = {} if self.dynamic is None else {"dynamic": self.dynamic}
        return {**head, "min": self.min, "opt": self.opt, "max": self.max, **self.extra}

    @classmethod
    def from_dict(cls, data: dict, key: str = "batch") -> "BatchRange | None":
        """The range of a manifest's ``batch`` object (None for an empty one); ManifestError naming the
        key that is missing or out of range."""
        if not data:
            return None
        missing = [k for k in ("min", "opt", "max") if k not in data]
        if missing:
            raise ManifestError(f'"{key}" has no {", ".join(repr(k) for k in missing)}: it records the '
                                "range MIN <= OPT <= MAX of batch sizes the graph takes")
        try:
            return cls(data["min"], data["opt"], data["max"], data.get("dynamic"),
                       {k: v for k, v in data.items() if k not in ("dynamic", "min", "opt", "max")})
        except ValueError as exc:
            raise ManifestError(f'"{key}": {exc}') from None


# ---------------------------------------------------------------------------- model section
_MODEL_FIELDS = ("source", "arch", "config", "params", "guessed", "output", "overrides", "source_sha256",
                 "source_absolute")


@dataclass(frozen=True)
class ModelSection:
    """The manifest's ``model`` section: the checkpoint ``source`` (relative to the manifest), its
    ``source_sha256`` and ``source_absolute`` path at export, the ``arch``, the exported ``config``, its
    ``params`` count, the config fields the loader ``guessed``, the loader ``overrides`` and the ``output``
    kind. ``keys`` are the keys the section holds, in the file's order (a key may hold null: a manifest
    written before edgevit recorded the hash lacks ``source_sha256``); ``extra`` keeps keys this edgevit
    does not know. ``to_dict`` writes them back as they were."""

    source: str | None = None
    arch: str | None = None
    config: dict | None = None
    params: int | None = None
    guessed: dict | None = None
    output: OutputKind | None = None
    overrides: dict | None = None
    source_sha256: str | None = None
    source_absolute: str | None = None
    extra: dict = field(default_factory=dict, compare=False)
    keys: tuple = field(default=(), compare=False)

    @classmethod
    def from_dict(cls, data: dict) -> "ModelSection":
        """The section of a ``model`` object (ValueError naming the kinds for an unknown ``output``)."""
        values = {k: data[k] for k in _MODEL_FIELDS if k in data}
        if values.get("output"):
            values["output"] = output_kind(values["output"])
        return cls(**values, extra={k: v for k, v in data.items() if k not in _MODEL_FIELDS}, keys=tuple(data))

    def with_fields(self, **values: Any) -> "ModelSection":
        """This section with ``values`` set (a key it lacks goes after the others)."""
        data = self.to_dict()
        data.update({k: (v.value if isinstance(v, OutputKind) else v) for k, v in values.items()})
        return ModelSection.from_dict(data)

    def to_dict(self) -> dict:
        out = {}
        for key in self.keys:
            value = getattr(self, key) if key in _MODEL_FIELDS else self.extra[key]
            out[key] = value.value if isinstance(value, OutputKind) else value
        return out

    @property
    def source_info(self) -> "ModelSource":
        """Where the exported weights came from, as :class:`ModelSource`."""
        return ModelSource(self.source, self.source_sha256, self.source_absolute, "source_sha256" in self.keys,
                           self.arch, dict(self.overrides or {}))


@dataclass(frozen=True)
class ModelSource:
    """Where an export's weights came from (the manifest's ``model`` section): ``name`` (a checkpoint
    path relative to the manifest, a variant or hub name, or "<...>" for an in-memory model), its
    ``sha256`` and ``absolute`` path at export, ``hashed`` (False for a manifest written before edgevit
    recorded the hash), and the ``arch`` and config ``overrides`` the loader was given."""

    name: str | None = None
    sha256: str | None = None
    absolute: str | None = None
    hashed: bool = True
    arch: str | None = None
    overrides: dict = field(default_factory=dict)

    @property
    def names_a_file(self) -> bool:
        """``name`` may name a file (it is no in-memory "<...>" placeholder)."""
        return isinstance(self.name, str) and bool(self.name) and not self.name.startswith("<")


# ---------------------------------------------------------------------------- tensor specs
_TENSOR_KEYS = ("name", "dtype", "shape", "dynamic_axes", "layout", "normalized")


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output: ``shape`` with the batch dim first (a name such as "batch" where it
    is dynamic), ``dynamic_axes`` ({"0": "batch"}), and for an image input its ``layout`` ("NCHW") and
    whether it takes ``normalized`` values. None marks a key the file does not hold; ``extra`` keeps
    keys this edgevit does not know."""

    name: str
    shape: tuple = ()
    dtype: str | None = None
    dynamic_axes: dict | None = None
    layout: str | None = None
    normalized: bool | None = None
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def sample_shape(self) -> tuple:
        """The shape of one sample: ``shape`` without the batch dim."""
        return tuple(self.shape[1:])

    def to_dict(self) -> dict:
        values = {"name": self.name, "dtype": self.dtype, "shape": list(self.shape),
                  "dynamic_axes": self.dynamic_axes, "layout": self.layout, "normalized": self.normalized}
        data = {k: v for k, v in values.items() if v is not None or k in ("name", "shape")}
        return {**data, **self.extra}

    @classmethod
    def from_dict(cls, data: dict) -> "TensorSpec":
        return cls(data.get("name"), tuple(data.get("shape") or ()), data.get("dtype"), data.get("dynamic_axes"),
                   data.get("layout"), data.get("normalized"), {k: v for k, v in data.items() if k not in _TENSOR_KEYS})


def input_section(data: dict, key: str) -> TensorSpec:
    """A graph input of a manifest: a batch dim then positive integer sample dims; ManifestError naming
    ``key`` otherwise."""
    spec = TensorSpec.from_dict(data)
    dims = spec.sample_shape
    if len(spec.shape) < 2 or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in dims):
        raise ManifestError(f'"{key}.shape" must be [batch, positive integer dims...] (e.g. ["batch", 3, 224, 224]), '
                            f"got {list(spec.shape)}")
    return spec


def tensor_dicts(specs) -> list[dict]:
    """``specs`` as the manifest writes them."""
    return [s.to_dict() for s in specs]


__all__ = ["ARTIFACT_TYPES", "BatchRange", "DEFAULT_BATCH", "ModelSection", "ModelSource", "IMAGENET_MEAN", "IMAGENET_STD", "INCEPTION_MEAN", "INCEPTION_STD", "INTERPOLATIONS",
           "Preprocessing", "TensorSpec", "check_batch_bounds", "check_json_type", "check_json_types", "input_section", "parse_batch",
           "preprocessing_section", "tensor_dicts"]
