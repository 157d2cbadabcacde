"""Options several commands share: ``--json``, ``--preprocessed``, ``--verify-hash``, the model
overrides (``--num-heads``, ``--act``, ``--img-size``), the precision-graph options of ``export``
and ``quantize``, the parsers of comma lists, and :func:`library_option`, an option whose default
(and choices) the library defines."""

from __future__ import annotations

import dataclasses
import functools
import importlib
import inspect

import click

from .._deps import missing_dependency
from ..formats import ACTIVATIONS, FLOAT_PRECISIONS, ONNX_PRECISIONS, QDQ_BASES, ROPES


def library_value(path: str):
    """The library's value at ``"module:NAME"`` (a constant), ``"module:Class.field"`` (the default
    of a config dataclass's field) or ``"module:function.parameter"`` (a parameter's default),
    imported when asked for."""
    module, _, name = path.partition(":")
    owner, _, attr = name.partition(".")
    try:
        value = getattr(importlib.import_module(module), owner)
    except ModuleNotFoundError as exc:  # the command's library needs an extra a device install leaves out
        missing = missing_dependency(exc)
        if missing is None:
            raise
        raise click.ClickException(str(missing)) from exc
    if not attr:
        return value
    if not dataclasses.is_dataclass(value):
        return inspect.signature(value).parameters[attr].default
    found = next(f for f in dataclasses.fields(value) if f.name == attr)
    return found.default_factory() if found.default is dataclasses.MISSING else found.default


class LibraryDefault(click.Option):
    """An option whose default is :func:`library_value` of ``default_from`` (``show`` turns it into
    the option's value, e.g. a tuple into a comma list), read when the command runs or shows its
    help: the CLI states no default of its own and imports no library to start."""

    def __init__(self, *decls, default_from: str, show=None, **kwargs):
        super().__init__(*decls, **kwargs)
        self.default_from, self.show = default_from, show

    def get_default(self, ctx, call: bool = True):
        value = library_value(self.default_from)
        return self.show(value) if self.show else value


class LibraryDefaultInHelp(click.Option):
    """An option left None when not given (the library applies its default), whose ``--help`` text
    names the library's default at ``default_from`` in place of ``{default}`` (``show`` formats it)."""

    def __init__(self, *decls, default_from: str, show=str, **kwargs):
        super().__init__(*decls, **kwargs)
        self.default_from, self.show = default_from, show

    def get_help_record(self, ctx):
        text = self.help
        self.help = text.format(default=self.show(library_value(self.default_from)))
        try:
            return super().get_help_record(ctx)
        finally:
            self.help = text


class LibraryChoice(click.Choice):
    """A choice among the library's values at ``path`` (:func:`library_value`), read when first needed."""

    def __init__(self, path: str, case_sensitive: bool = True) -> None:
        self.path, self.case_sensitive = path, case_sensitive

    @property
    def choices(self) -> tuple:
        return tuple(library_value(self.path))


def library_option(*decls, default_from: str, show=None, **kwargs):
    """``click.option`` whose default, shown by ``--help``, is the library's (:class:`LibraryDefault`)."""
    return click.option(*decls, cls=LibraryDefault, default_from=default_from, show=show, show_default=True,
                        **kwargs)


QUANTIZE_CONFIG = "edgevit.precision.pipeline:QuantizeConfig"
CALIBRATION_CONFIG = "edgevit.precision.calibration.calibrate:CalibrationConfig"

json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
preprocessed_option = click.option(
    "--preprocessed", is_flag=True,
    help=".npy/.npz arrays are model input already (normalized N,C,H,W); default: raw pixels on 0..pixel_max.")
verify_hash_option = click.option(
    "--verify-hash/--no-verify-hash", "verify_hash", default=True, show_default=True,
    help="Check each file an edgevit.json lists against its recorded sha256 before use.")


MODEL_OVERRIDES = ("num_heads", "act", "img_size", "post_norm", "pool_include_prefix", "rope", "pool")


class SizeOrRange(click.ParamType):
    """``PX`` (an int), or ``MIN:MAX`` (a pair): one image size, or a range of heights and widths."""

    name = "PX|MIN:MAX"

    def convert(self, value, param, ctx):
        if isinstance(value, (int, tuple)):
            return value
        text = str(value).strip()
        try:
            parts = [int(p) for p in text.split(":")]
        except ValueError:
            self.fail(f"{text!r} is not PX or MIN:MAX (positive integers, e.g. 224 or 224:518)", param, ctx)
        if len(parts) > 2 or min(parts) < 1 or len(parts) == 2 and parts[0] >= parts[1]:
            self.fail(f"{text!r}: give PX, or MIN:MAX with 1 <= MIN < MAX (e.g. 224:518; one size is PX)", param, ctx)
        return parts[0] if len(parts) == 1 else tuple(parts)


def model_override_options(fn):
    """--num-heads, --act, --img-size, --post-norm, --pool-include-prefix, --rope, --pool: what a checkpoint's tensors
    cannot tell (and the size to
    deploy at), passed to :func:`edgevit.load_model` as config overrides. The command receives
    them as one ``model_overrides`` dict (only the options given)."""

    takes_range = "size_range" in inspect.signature(fn).parameters

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        overrides = {}
        for name in MODEL_OVERRIDES:
            value = kwargs.pop(name)
            if value is not None:
                overrides[name] = value
        size = overrides.get("img_size")
        if isinstance(size, tuple):  # a range: the command's own (export), the model loads at its size
            if not takes_range:
                raise click.BadParameter(f"{size[0]}:{size[1]} is a range of sizes, which only `edgevit export` takes "
                                         "(a graph of dynamic height and width); give one size PX",
                                         param_hint="'--img-size'")
            kwargs["size_range"] = overrides.pop("img_size")
        return fn(*args, model_overrides=overrides, **kwargs)

    opts = [
        click.option("--num-heads", type=click.IntRange(min=1), metavar="N",
                     help="Attention heads of a checkpoint that does not record them (a state dict: guessed as "
                          "dim/64 otherwise)."),
        click.option("--act", type=click.Choice(ACTIVATIONS),
                     help="MLP activation the weights cannot tell, e.g. quick_gelu for OpenAI CLIP towers."),
        click.option("--img-size", type=SizeOrRange(), metavar="PX|MIN:MAX",
                     help="Load at this input size (a learned pos_embed is resampled, as timm does). export also "
                          "takes MIN:MAX: height and width each dynamic in that range, the position table resampled "
                          "inside the graph (bilinear)."),
        click.option("--post-norm/--no-post-norm", "post_norm", default=None,
                     help="Blocks normalise after each branch (timm's res-post-norm, vit_*_rpn_*) or before it; "
                          "asked only where the weights fit both."),
        click.option("--pool-include-prefix/--pool-patches-only", "pool_include_prefix", default=None,
                     help="Attention pooling over the class/register tokens too, or the patches only; asked only "
                          "where the weights fit both."),
        click.option("--rope", type=click.Choice(ROPES),
                     help="Rotary position embedding of a timm Eva-layout state dict, which does not store it: none "
                          "for EVA-01; asked only where the weights fit several."),
        click.option("--pool", type=click.Choice(("cls", "mean")),
                     help="Features from the class token or the patch tokens' mean, where the weights fit both "
                          "(timm's DINOv3 layout).")]
    for opt in reversed(opts):
        wrapper = opt(wrapper)
    return wrapper


def precision_options(fn):
    """Options shared by ``quantize`` and ``export --precision``."""
    opts = [
        library_option("--io-dtype", type=click.Choice(FLOAT_PRECISIONS), default_from=f"{QUANTIZE_CONFIG}.io_dtype",
                       help="Graph input/output type of the fp16/bf16 graphs."),
        library_option("--int8-base", type=click.Choice(QDQ_BASES), default_from=f"{QUANTIZE_CONFIG}.int8_base",
                       help="Precision of everything int8/fp8 does not quantize."),
        click.option("--quantize-attention", is_flag=True,
                     help="Also Q/DQ the two attention MatMuls (TensorRT's INT8 fused MHA placement)."),
        click.option("--quantize-patch-embed", is_flag=True, help="Also Q/DQ the patch-embedding Conv."),
        click.option("--exclude", multiple=True, metavar="PATTERN",
                     help="Keep matching nodes (fnmatch on names like blocks.11.mlp.fc2) unquantized; repeatable."),
        click.option("--calib-data",
                     help="Calibration images: 'digits' (train split), an ImageFolder (train split) or .npy/.npz "
                          "(raw pixels; see --preprocessed). Default: the bundled digits for models of 1x8x8 "
                          "input; other models must name theirs."),
        library_option("--calib-samples", type=int, default_from=f"{QUANTIZE_CONFIG}.calib_samples"),
        library_option("--calib-batch", type=int, default_from=f"{QUANTIZE_CONFIG}.calib_batch"),
        library_option("--calib-method", type=LibraryChoice("edgevit.precision.calibration.calibrate:METHODS"),
                       default_from=f"{CALIBRATION_CONFIG}.method"),
        library_option("--percentile", type=float, default_from=f"{CALIBRATION_CONFIG}.percentile"),
        click.option("--calib-cache", type=click.Path(dir_okay=False),
                     help="Calibration cache JSON (default OUTDIR/calibration.json); reused while valid."),
        click.option("--data", "gate_data",
                     help="Labelled held-out data of the accuracy gate (its test split). Default: the bundled "
                          "digits for models of 1x8x8 input; other models must name theirs (or --no-gate)."),
        preprocessed_option,
        library_option("--max-drop", type=float, default_from=f"{QUANTIZE_CONFIG}.max_drop",
                       help="Top-1 budget in points."),
        click.option("--sensitivity", is_flag=True, help="Report per-layer sensitivity of int8/fp8."),
        click.option("--auto-exclude", is_flag=True,
                     help="Keep the most sensitive layers unquantized, one at a time, until the gate passes."),
        click.option("--no-gate", is_flag=True, help="Skip the gate (recorded as not verified)."),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


def parse_precisions(text: str) -> tuple[str, ...]:
    values = csv_list(text) or ()
    bad = [p for p in values if p not in ONNX_PRECISIONS]
    if bad or not values:
        raise ValueError(f"--precision takes a comma list of {', '.join(ONNX_PRECISIONS)}; got {text!r}")
    return values


def csv_list(value: str | None) -> tuple | None:
    return tuple(v.strip() for v in value.split(",") if v.strip()) if value else None


def int_list(value: str | None, option: str) -> tuple:
    if not value:
        return ()
    try:
        out = tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers such as 1,2,4,8, got {value!r}",
                                 param_hint=option) from None
    if any(v < 1 for v in out):
        raise click.BadParameter(f"batch sizes must be >= 1, got {value!r}", param_hint=option)
    return out
