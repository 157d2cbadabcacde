"""Hugging Face checkpoints to edgevit's (timm's) names, and the config a ``config.json`` describes.

ViT, DeiT, Dinov2[WithRegisters], CLIPVision, SiglipVision and the model types whose vision encoder is
one of those in the same names (ViTMSN, ViTMAE, I-JEPA, OWL-ViT, the CLIP-like towers) are mapped here;
the families with their own layout (DINOv3, BEiT) in :mod:`edgevit.models.families`. Only tensors that
hold no weights of the deployed model are dropped (``mask_token``, index buffers); the tanh ``pooler``
of ViTModel / DeiTModel is left for the loader to drop with a warning.
"""

from __future__ import annotations

import re

import torch

from ..data.preprocess import INCEPTION_MEAN, INCEPTION_STD, Preprocessing
from .config import ViTConfig
from .convert import SUPPORTED_FAMILIES, foreign_model_type, timm_layout

Tensor = torch.Tensor


def hf_conventions(state: dict[str, Tensor]) -> dict:
    """What transformers' own config classes default to, for a state dict in their names (a bare file
    without its config.json), where timm's conventions differ: LayerNorm eps 1e-12 for ViT and DeiT
    (``layernorm_before``); quick-GELU for CLIP towers (a ``pre_layrnorm``: CLIP, OWL-ViT and the other
    CLIP-like encoders) and the tanh GELU for SigLIP towers (a patch embedding without a class
    embedding). Guesses all the same: the loader warns about each."""
    keys = list(state)
    if any(".layernorm_before." in k for k in keys):
        return {"norm_eps": 1e-12}
    if any(re.search(r"pre_laye?rnorm\.weight$", k) for k in keys):
        return {"act": "quick_gelu"}
    if any(k.endswith("embeddings.patch_embedding.weight") for k in keys) and not any(
            k.endswith("embeddings.class_embedding") for k in keys):
        return {"act": "gelu_tanh"}
    return {}


# Hugging Face -> timm names, for ViT, DeiT, Dinov2[WithRegisters], CLIPVision and SiglipVision
# models. Two layouts each: the hub's (transformers 4.x, and what 5.x save_pretrained writes) and
# the in-memory one of transformers 5.x. The model prefix (vit., deit., dinov2., vision_model.)
# goes first, then a block's prefix becomes blocks.N.
_HF_MODEL_PREFIX = re.compile(r"^(?:vit|deit|dinov2|dinov2_with_registers|ijepa|vision_model)\.")
_HF_BLOCK = re.compile(r"^(?:encoder\.layers?|layers)\.(\d+)\.")
_HF_BLOCK_RENAMES = [
    (r"(?:layernorm_before|norm1|layer_norm1)\.", "norm1."),
    (r"(?:layernorm_after|norm2|layer_norm2)\.", "norm2."),
    (r"(?:attention\.output\.dense|attention\.o_proj|self_attn\.out_proj)\.", "attn.proj."),
    (r"(?:intermediate\.dense|mlp\.fc1)\.", "mlp.fc1."),
    (r"(?:output\.dense|mlp\.fc2)\.", "mlp.fc2."),
    # Dinov2's SwiGLU (use_swiglu_ffn): the hub's packed weights_in (gate first) / weights_out, and the
    # gate_proj / up_proj / down_proj transformers 5.x splits them into in memory
    (r"mlp\.weights_in\.", "mlp.fc1."),
    (r"mlp\.(?:weights_out|down_proj)\.", "mlp.fc2."),
    (r"mlp\.gate_proj\.", "mlp.fc1_g."),
    (r"mlp\.up_proj\.", "mlp.fc1_x."),
    (r"layer_scale1\.lambda1$", "ls1.gamma"),
    (r"layer_scale2\.lambda1$", "ls2.gamma"),
]
_HF_QKV = re.compile(
    r"^(?:attention\.attention\.(query|key|value)|(?:attention|self_attn)\.([qkv])_proj)\.(weight|bias)$")
_QKV_ORDER = {"query": 0, "key": 1, "value": 2, "q": 0, "k": 1, "v": 2}
_HF_RENAMES = [
    (r"embeddings\.cls_token$", "cls_token"),
    (r"embeddings\.distillation_token$", "dist_token"),
    (r"embeddings\.register_tokens$", "reg_token"),
    (r"embeddings\.position_embeddings$", "pos_embed"),
    (r"embeddings\.(?:patch_embeddings\.projection|patch_embedding)\.", "patch_embed.proj."),
    (r"pre_laye?rnorm\.", "norm_pre."),  # CLIP's spelling, and OWL-ViT's
    (r"(?:layernorm|post_layernorm)\.", "norm."),
    (r"(?:classifier|cls_classifier)\.", "head."),
    (r"distillation_classifier\.", "head_dist."),
    (r"visual_projection\.weight$", "proj.weight"),
    (r"head\.probe$", "attn_pool.latent"),
    (r"head\.attention\.out_proj\.", "attn_pool.proj."),
    (r"head\.layernorm\.", "attn_pool.norm."),
    (r"head\.mlp\.", "attn_pool.mlp."),
]
# Tensors that hold no weights of the deployed model: the masked-pretraining token and index buffers.
_HF_DROPPED = re.compile(r"^embeddings\.(?:mask_token|position_ids)$")
# The tanh pooler of HF ViTModel / DeiTModel (pooler_output): not part of a classifier or of timm's features.
HF_POOLER = re.compile(r"^pooler\.dense\.(?:weight|bias)$")


def is_hf_state_dict(state: dict) -> bool:
    return any(_HF_MODEL_PREFIX.sub("", k).startswith(("embeddings.patch_embedding", "embeddings.position_embedding"))
               for k in state)


CLIP_CLASSIFIER = ("a transformers CLIPForImageClassification: its classifier reads the mean of the patch tokens "
                   "before CLIP's final norm, a pooling edgevit's ViT does not implement; deploy the CLIPVisionModel "
                   "tower (features) or fine-tune a timm vit_*_clip_* classifier")


def hf_to_timm_state_dict(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Map a Hugging Face ViT / DeiT / Dinov2 / CLIPVision / SiglipVision state dict to timm names:
    q, k and v are concatenated into one qkv projection (the MAP head's packed in_proj split into
    q and kv), CLIP's (D,) class embedding and (N, D) position table get timm's shapes, Dinov2's
    register layout becomes timm's (see :func:`timm_layout`). The ``pooler.dense`` of ViTModel /
    DeiTModel is kept under its name for the caller to decide; keys no rule knows pass through,
    so a strict load reports them."""
    out: dict[str, Tensor] = {}
    qkv: dict[tuple[str, str], list] = {}
    if any(k.startswith("classifier.") for k in state) and any(re.search(r"pre_laye?rnorm\.weight$", k) for k in state):
        raise ValueError(CLIP_CLASSIFIER)
    for key, value in state.items():
        key = _HF_MODEL_PREFIX.sub("", key)
        if _HF_DROPPED.match(key):
            continue
        block = _HF_BLOCK.match(key)
        if block:
            rest = key[block.end():]
            match = _HF_QKV.match(rest)
            if match:
                which = match.group(1) or match.group(2)
                qkv.setdefault((block.group(1), match.group(3)), [None, None, None])[_QKV_ORDER[which]] = value
                continue
            for pattern, repl in _HF_BLOCK_RENAMES:
                rest, n = re.subn(f"^{pattern}", repl, rest)
                if n:
                    break
            out[f"blocks.{block.group(1)}.{rest}"] = value
            continue
        if key.startswith("head.attention.in_proj_"):  # SigLIP's MAP head: nn.MultiheadAttention
            dim = value.shape[0] // 3
            kind = key.rsplit("_", 1)[1]
            out[f"attn_pool.q.{kind}"], out[f"attn_pool.kv.{kind}"] = value[:dim], value[dim:]
            continue
        if key == "embeddings.class_embedding":  # CLIP
            key, value = "cls_token", value.reshape(1, 1, -1)
        elif key == "embeddings.position_embedding.weight":  # CLIP, SigLIP: an nn.Embedding
            key, value = "pos_embed", value.unsqueeze(0)
        else:
            for pattern, repl in _HF_RENAMES:
                new, n = re.subn(f"^{pattern}", repl, key)
                if n:
                    key = new
                    break
        out[key] = value
    for (block, kind), parts in qkv.items():
        if any(p is None for p in parts):
            raise KeyError(f"block {block}: query/key/value {kind} tensors incomplete")
        out[f"blocks.{block}.attn.qkv.{kind}"] = torch.cat(parts, dim=0)
    if "reg_token" in out:  # Dinov2WithRegisters: registers follow the position-embedded class token
        out["register_tokens"] = out.pop("reg_token")
        out = timm_layout(out)
    if "head.weight" in out and "attn_pool.latent" in out:
        # SiglipForImageClassification: its classifier reads the mean of the final-normed tokens; the
        # attention-pool head it carries from SiglipVisionModel is not used (the caller says so)
        out = {k: v for k, v in out.items() if not k.startswith("attn_pool.")}
        out[HF_UNUSED_MAP_HEAD] = torch.zeros(0)
    return out


# A marker :func:`hf_to_timm_state_dict` leaves where it dropped SiglipForImageClassification's unused
# attention-pool head, for the loader to say so (and remove).
HF_UNUSED_MAP_HEAD = "_edgevit_unused_siglip_map_head"


_HF_ACTS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "quick_gelu": "quick_gelu",
            "relu": "relu"}


# ViTConfig field -> the Hugging Face config.json key it is read from (messages use the latter).
HF_NAMES = {"img_size": "image_size", "patch_size": "patch_size", "in_chans": "num_channels",
            "embed_dim": "hidden_size", "depth": "num_hidden_layers", "num_heads": "num_attention_heads",
            "mlp_ratio": "intermediate_size", "qkv_bias": "qkv_bias", "num_classes": "id2label",
            "reg_tokens": "num_register_tokens"}
# config.json model_type -> (the classes it covers, its config class's defaults where they differ from
# ViT's: save_pretrained writes only the values that differ from them).
HF_FAMILIES = {
    "vit": ("ViTModel, ViTForImageClassification", {}),
    "deit": ("DeiTModel, DeiTForImageClassification[WithTeacher]", {}),
    "dinov2": ("Dinov2Model, Dinov2ForImageClassification", {"patch_size": 14, "layer_norm_eps": 1e-6}),
    "dinov2_with_registers": ("Dinov2WithRegistersModel, Dinov2WithRegistersForImageClassification",
                              {"layer_norm_eps": 1e-6, "num_register_tokens": 4}),
    "clip_vision_model": ("CLIPVisionModel, CLIPVisionModelWithProjection",
                          {"patch_size": 32, "layer_norm_eps": 1e-5, "hidden_act": "quick_gelu"}),
    "siglip_vision_model": ("SiglipVisionModel", {"layer_norm_eps": 1e-6, "hidden_act": "gelu_pytorch_tanh"}),
    # ViTs that other model types name (their weights are ViT's or CLIP's, in the same names)
    "vit_msn": ("ViTMSNModel, ViTMSNForImageClassification", {"layer_norm_eps": 1e-6}),
    "vit_mae": ("ViTMAEModel (the encoder on every patch: no masking)", {}),
    "ijepa": ("IJepaModel, IJepaForImageClassification (mean of the tokens)", {}),
    **{model_type: (cls, {"patch_size": patch, "layer_norm_eps": 1e-5, "hidden_act": "quick_gelu",
                          **({"image_size": 768} if model_type.startswith("owl") else {})})
       for model_type, cls, patch in (
           ("chinese_clip_vision_model", "ChineseCLIPVisionModel", 32),
           ("altclip_vision_model", "AltCLIPVisionModel", 32),
           ("clipseg_vision_model", "CLIPSegVisionModel", 32),
           ("git_vision_model", "GitVisionModel", 16),
           ("metaclip_2_vision_model", "MetaClip2VisionModel[WithProjection]", 32),
           ("owlvit_vision_model", "OwlViTVisionModel (OWL-ViT's image encoder, as NanoOWL runs it)", 32),
           ("owlv2_vision_model", "Owlv2VisionModel", 16))},
}
# Whole text-image models: only their vision tower is supported.
_HF_TOWERS = {"clip": "CLIPVisionModelWithProjection", "siglip": "SiglipVisionModel",
              "chinese_clip": "ChineseCLIPVisionModel", "altclip": "AltCLIPVisionModel", "clipseg": "CLIPSegVisionModel",
              "metaclip_2": "MetaClip2VisionModelWithProjection", "owlvit": "OwlViTVisionModel",
              "owlv2": "Owlv2VisionModel"}


# Image-text models whose image classifier loads: (the class, the vision tower's model_type).
_HF_TOWER_CLASSIFIERS = {"siglip": ("SiglipForImageClassification", "siglip_vision_model")}


def hf_tower_classifier(hf: dict) -> dict:
    """A SiglipForImageClassification ``config.json`` as its vision tower's (``vision_config``), with the
    classifier's ``id2label``; any other config unchanged."""
    if hf.get("model_type") == "clip" and "CLIPForImageClassification" in (hf.get("architectures") or ()):
        raise ValueError(CLIP_CLASSIFIER)
    cls, tower = _HF_TOWER_CLASSIFIERS.get(hf.get("model_type"), (None, None))
    if cls is None or cls not in (hf.get("architectures") or ()):
        return hf
    vision = hf.get("vision_config")
    if not isinstance(vision, dict):
        raise ValueError(f"a {cls} config.json without a vision_config object")
    return {**vision, "model_type": tower, **({"id2label": hf["id2label"]} if "id2label" in hf else {})}


def hf_family(model_type) -> str:
    """The supported ``model_type`` (None: a ViT), or ValueError saying what is supported."""
    model_type = model_type or "vit"
    if model_type in HF_FAMILIES:
        return model_type
    if model_type in _HF_TOWERS:
        tower = _HF_TOWERS[model_type]
        classifier = _HF_TOWER_CLASSIFIERS.get(model_type, (None,))[0]
        also = f" (a {classifier} loads as it is: its config.json's architectures names it)" if classifier else ""
        raise ValueError(
            f"model_type {model_type!r} is a whole image-text model{also}; edgevit deploys its vision tower: save "
            f"it with transformers.{tower}.from_pretrained(PATH).save_pretrained(OUT) and load OUT")
    foreign = foreign_model_type(model_type)
    if foreign:
        raise ValueError(f"model_type {model_type!r} is {foreign[0]}, which edgevit does not load: its ViT lacks "
                         f"{foreign[1]}. Families: {SUPPORTED_FAMILIES}")
    listed = "; ".join(f"{k} ({v[0]})" for k, v in HF_FAMILIES.items())
    raise ValueError(f"model_type {model_type!r} is not a ViT family edgevit loads; supported model_type values: "
                     f"{listed}. Families: {SUPPORTED_FAMILIES}")


_HF_SIZES = {"image_size": 224, "patch_size": 16, "num_channels": 3, "hidden_size": 768,
             "num_hidden_layers": 12, "num_attention_heads": 12}


def _positive_int(hf: dict, key: str, default: int) -> int:
    value = hf.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{key} must be a positive integer, got {value!r}")
    return value


def config_from_hf(hf: dict) -> ViTConfig:
    """Build a ViTConfig from a Hugging Face ``config.json`` of a supported ``model_type``
    (:data:`HF_FAMILIES`: its defaults, eps, act, qkv_bias, mlp_ratio or intermediate_size,
    register tokens honoured). The prefix tokens, pooling and heads are the weights' to tell.
    Raises ValueError naming the config.json key that is wrong (Hugging Face's names)."""
    hf = {**HF_FAMILIES[hf_family(hf.get("model_type"))][1], **hf}
    swiglu = hf.get("use_swiglu_ffn", False)
    if not isinstance(swiglu, bool):
        raise ValueError(f"use_swiglu_ffn must be true or false, got {swiglu!r}")
    swiglu = swiglu and hf_family(hf.get("model_type")).startswith("dinov2")  # only Dinov2's classes read it
    act = hf.get("hidden_act", "gelu")
    if not isinstance(act, str) or act not in _HF_ACTS:
        raise ValueError(f"hidden_act {act!r} is not supported; supported: {sorted(_HF_ACTS)}")
    size = {key: _positive_int(hf, key, default) for key, default in _HF_SIZES.items()}
    dim, heads = size["hidden_size"], size["num_attention_heads"]
    ratio = hf.get("mlp_ratio", 4)  # Dinov2's config states a ratio, the others a width
    if not isinstance(ratio, (int, float)) or isinstance(ratio, bool) or ratio <= 0:
        raise ValueError(f"mlp_ratio must be a positive number, got {ratio!r}")
    hidden = _positive_int(hf, "intermediate_size", int(dim * ratio))
    if swiglu:  # Dinov2SwiGLUFFN: two thirds of the MLP width, rounded up to a multiple of 8
        hidden = (int(hidden * 2 / 3) + 7) // 8 * 8
    if dim % heads:
        raise ValueError(f"hidden_size ({dim}) must be divisible by num_attention_heads ({heads})")
    if size["image_size"] % size["patch_size"]:
        raise ValueError(f"image_size ({size['image_size']}) must be divisible by patch_size ({size['patch_size']})")
    eps, qkv_bias = hf.get("layer_norm_eps", 1e-12), hf.get("qkv_bias", True)
    if not isinstance(eps, (int, float)) or isinstance(eps, bool) or not 0 < eps < 1:
        raise ValueError(f"layer_norm_eps must be a number in (0, 1), got {eps!r}")
    if not isinstance(qkv_bias, bool):
        raise ValueError(f"qkv_bias must be true or false, got {qkv_bias!r}")
    labels = labels_from_hf(hf) or ()
    return ViTConfig(
        img_size=size["image_size"],
        patch_size=size["patch_size"],
        in_chans=size["num_channels"],
        num_classes=len(labels) or 2,
        embed_dim=dim,
        depth=size["num_hidden_layers"],
        num_heads=heads,
        mlp_ratio=hidden / dim,
        mlp="swiglu_packed" if swiglu else "mlp",  # the weights tell packed (weights_in) from split (gate_proj)
        qkv_bias=qkv_bias,
        norm_eps=float(eps),
        act=_HF_ACTS[act],
        reg_tokens=_positive_int(hf, "num_register_tokens", 1) if "num_register_tokens" in hf else 0,
        no_embed_class="num_register_tokens" in hf,  # registers join after the position embedding
    )


def labels_from_hf(hf: dict) -> list[str] | None:
    """Class names from ``id2label`` in index order; ValueError unless its keys are 0..N-1."""
    id2label = hf.get("id2label")
    if not id2label:
        return None
    if not isinstance(id2label, dict) or sorted(map(str, id2label)) != sorted(map(str, range(len(id2label)))):
        raise ValueError(f"id2label must map the class indices 0..N-1 to names, got {str(id2label)[:80]}")
    names = {str(k): v for k, v in id2label.items()}
    return [str(names[str(i)]) for i in range(len(names))]


def hf_crop_size(pre: dict | None) -> int | None:
    """The square size a ``preprocessor_config.json`` center-crops to, if it crops."""
    pre = pre or {}
    crop = pre.get("crop_size")
    crop = crop.get("height") if isinstance(crop, dict) and crop.get("height") == crop.get("width") else crop
    return crop if pre.get("do_center_crop") and isinstance(crop, int) and not isinstance(crop, bool) else None


def preprocessing_from_hf(pre: dict | None, cfg: ViTConfig) -> Preprocessing:
    """From ``preprocessor_config.json``: ViT / SigLIP processors resize straight to the input size;
    CLIP / DINOv2 / DeiT ones resize the shorter side then center-crop (crop_pct = crop / shorter side)."""
    pre = pre or {}
    resample = {0: "nearest", 2: "bilinear", 3: "bicubic"}.get(pre.get("resample", 2), "bilinear")
    size, crop = pre.get("size"), hf_crop_size(pre)
    shorter = size.get("shortest_edge") if isinstance(size, dict) else None
    crop_pct = min(1.0, crop / shorter) if crop and isinstance(shorter, int) and shorter > 0 else 1.0
    return Preprocessing(
        input_size=(cfg.in_chans, cfg.img_size, cfg.img_size),
        mean=tuple(pre.get("image_mean", INCEPTION_MEAN))[: cfg.in_chans],
        std=tuple(pre.get("image_std", INCEPTION_STD))[: cfg.in_chans],
        interpolation=resample,
        crop_pct=crop_pct,
        pixel_max=1.0 / float(pre.get("rescale_factor", 1 / 255)),
    )
