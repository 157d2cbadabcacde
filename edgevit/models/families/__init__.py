"""ViT families whose checkpoints differ from timm's VisionTransformer layout: one module each.

The model stays one class (:class:`edgevit.models.vit.VisionTransformer`): families differ in how
their checkpoints name and pack the weights and in how positions enter attention (RoPE on Q and K,
an additive relative-position bias), not in the attention pattern that export, lint, the fusion
report and verify rely on. So a family module holds what is particular to it, and nothing else
does:

* ``NAME``: the family, as messages and ``edgevit info`` say it;
* ``recognise(state) -> bool``: whether an unwrapped state dict (timm's, the original authors' or
  Hugging Face's names, before any mapping) is this family's;
* ``to_edgevit(state) -> (state, fields)``: the state dict in edgevit's names (timm's), and the
  :class:`~edgevit.models.vit.ViTConfig` fields the family fixes that the shapes cannot tell;
* optionally ``undecided(state) -> {field: why}``: what its state dicts leave open between layouts that
  both exist (the loader refuses until the option that decides is given);
* optionally ``PREPROCESSING``: the family's input preprocessing (Preprocessing fields) where a bare state
  dict does not say it and ImageNet's defaults would be wrong;
* ``HF_MODEL_TYPES`` and ``config_from_hf(hf) -> ViTConfig``: the ``config.json`` ``model_type``
  values it covers and the config they describe (ValueError naming the config.json key on bad
  values); a Hugging Face directory's weights then go through ``to_edgevit`` too.
"""

from __future__ import annotations

from types import ModuleType

from . import beit, dinov3, eva02, sam

FAMILIES: tuple[ModuleType, ...] = (beit, eva02, dinov3, sam)


def recognise(state: dict) -> ModuleType | None:
    """The family module whose layout ``state`` is in, or None (timm's VisionTransformer or HF's ViTs)."""
    return next((family for family in FAMILIES if family.recognise(state)), None)


def preprocessing(family: ModuleType | None) -> dict | None:
    """The family's own preprocessing fields (its ``PREPROCESSING``), None for the defaults."""
    return getattr(family, "PREPROCESSING", None)


def undecided(family: ModuleType | None, state: dict) -> dict[str, str]:
    """What ``family``'s layout of ``state`` leaves open (its ``undecided``), ``{}`` for none."""
    ask = getattr(family, "undecided", None)
    return ask(state) if ask is not None else {}


def by_model_type(model_type) -> ModuleType | None:
    """The family module covering a Hugging Face ``model_type``, or None."""
    return next((family for family in FAMILIES if model_type in family.HF_MODEL_TYPES), None)
