"""The optimizer side of training: the EMA of the weights (torch.optim.swa_utils) follows its
warmed-up formula, and a resumed run continues it exactly."""

from __future__ import annotations

import copy

import pytest
import torch

from edgevit.models import create_model, load_model
from edgevit.train import TrainConfig, train
from edgevit.train.optim import ema_model, ema_state, load_ema

FAST = dict(progress=False, threads=1, eval_batch_size=256, device="cpu")


def _nudge(model: torch.nn.Module, gen: torch.Generator) -> None:
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.01)


def test_ema_follows_the_warmed_up_formula_and_resumes():
    torch.manual_seed(0)
    model, gen, decay = create_model("digits-tiny"), torch.Generator().manual_seed(1), 0.99
    ema = ema_model(model, decay)
    reference = [p.detach().double().clone() for p in model.parameters()]  # starts at the initial weights
    for step in range(1, 31):
        _nudge(model, gen)
        ema.update_parameters(model)
        d = min(decay, (1 + step) / (10 + step))
        reference = [r + (1 - d) * (p.detach().double() - r) for r, p in zip(reference, model.parameters())]
        if step == 20:  # a run stopped here and resumed from its saved state
            resumed = ema_model(copy.deepcopy(model), decay)
            load_ema(resumed, ema_state(ema), step)
        elif step > 20:
            resumed.update_parameters(model)
    worst = max(float((p.double() - r).abs().max()) for p, r in zip(ema.module.parameters(), reference))
    assert worst < 1e-6, f"EMA differs from min(decay, (1+t)/(10+t)) averaging by up to {worst}"
    a, b = ema.module.state_dict(), resumed.module.state_dict()
    gap = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert gap == 0.0, f"a resumed EMA differs from an uninterrupted one by up to {gap}"


def test_ema_run_resumes_exactly(tmp_path, small_npz):
    """With ema on, best.safetensors holds the average; a run cut after epoch 1 and resumed ends
    with the same averaged weights as an uninterrupted one."""
    common = dict(data=str(small_npz), epochs=2, seed=2, ema=0.9, **FAST)
    full = train(TrainConfig(output=str(tmp_path / "full"), **common))

    class Stop(Exception):
        pass

    def stop(record):
        raise Stop

    with pytest.raises(Stop):
        train(TrainConfig(output=str(tmp_path / "cut"), **common), callback=stop)
    resumed = train(TrainConfig(resume=str(tmp_path / "cut"), **FAST))
    a = load_model(tmp_path / "full" / "best.safetensors").state_dict()
    b = load_model(tmp_path / "cut" / "best.safetensors").state_dict()
    gap = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert gap == 0.0, f"resumed EMA weights differ from an uninterrupted run by up to {gap}"
    last = load_model(tmp_path / "full" / "last.safetensors").state_dict()
    moved = max(float((a[k] - last[k]).abs().max()) for k in a)
    assert moved > 0, "best.safetensors should hold the averaged weights, not the last ones"
    assert resumed.test_accuracy == full.test_accuracy, (resumed.test_accuracy, full.test_accuracy)


def test_weight_decay_spares_tokens_position_tables_norms_and_biases():
    from edgevit.models.vit import ViTConfig, VisionTransformer
    from edgevit.train.optim import adamw

    small = dict(img_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2, num_classes=3)
    for cfg, tokens in ((ViTConfig(**small, reg_tokens=2), {"cls_token", "reg_token", "pos_embed"}),
                        (ViTConfig(**small, rel_pos_bias="block"), {"cls_token", "blocks.0.attn.pos_bias.table"})):
        model = VisionTransformer(cfg)
        decay, spared = adamw(model, TrainConfig(weight_decay=0.05)).param_groups
        names = {id(p): n for n, p in model.named_parameters()}
        spared_names = {names[id(p)] for p in spared["params"]}
        decayed_names = {names[id(p)] for p in decay["params"]}
        assert tokens <= spared_names, spared_names
        assert decayed_names == {n for n, p in model.named_parameters()
                                 if p.ndim >= 2 and n not in tokens and n != "pos_embed"}, decayed_names
        assert (decay["weight_decay"], spared["weight_decay"]) == (0.05, 0.0)
