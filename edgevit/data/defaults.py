"""Which data a command uses when none is given: the bundled digits, for the models they fit only.

The digits are grey 8x8 images; :func:`edgevit.data.sources.load_digits` can resize them and repeat
the grey plane for any model, which is what ``--data digits`` / ``--calib-data digits`` asks for.
As a default they would calibrate, gate or score another kind of model on upscaled digits without a
word, so :func:`default_data` gives them only to models of :data:`DIGITS_INPUT` and otherwise asks
for the option.
"""

from __future__ import annotations

from ..errors import DataError
from .sources import DIGITS

DIGITS_INPUT = (1, 8, 8)  # (C, H, W) of the models the bundled digits are the default data of


def default_data(spec, input_shape, option: str, other: str = "") -> str:
    """``spec`` as given; when None (the option was not given) the bundled digits if they fit the
    model, whose input (C, H, W) is ``input_shape``: :data:`DIGITS_INPUT`. Otherwise DataError asking
    for ``option`` (``other``: another way out, such as ``--no-gate``): upscaled grey 8x8 digits
    would calibrate or judge another kind of model silently."""
    if spec is not None:
        return str(spec)
    shape = tuple(input_shape or ())
    if shape == DIGITS_INPUT:
        return DIGITS
    raise DataError(
        f"{option} was not given, and its default, the bundled digits (grey 8x8 images, for models of input "
        f"{list(DIGITS_INPUT)}), does not fit this model's input {list(shape)}: give {option} with the model's "
        f"own kind of images (an ImageFolder directory, or a .npy/.npz of raw pixels){other} "
        f"({option} digits would force the upscaled digits)")


__all__ = ["DIGITS_INPUT", "default_data"]
