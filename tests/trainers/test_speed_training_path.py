"""The CPU training path of ``fourm_core.accel`` (fused output projection + cross-entropy, allocator setting)
computes the same maths as the model's plain path: same losses over several optimizer steps, same gradients.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fourm_core.accel import linear_cross_entropy, prepare_training, tune_allocator
from fourm_core.masking import Masker, MaskingConfig
from fourm_core.model import build_model
from fourm_registry import ModalitySet, ModalitySpec

SER = "fourm_core.compat.serializer:PlainTextSerializer"


def _modalities() -> ModalitySet:
    img = dict(kind="image", grid=(4, 4))
    return ModalitySet([
        ModalitySpec(name="rgb", kind="pixels", grid=(4, 4), patch_size=4, channels=3, decoder=False),
        ModalitySpec(name="tok_a", vocab_size=300, **img),
        ModalitySpec(name="tok_b", vocab_size=120, **img),
        ModalitySpec(name="caption", kind="sequence", vocab_size=500, max_length=12, serializer=SER),
    ])


def _batches(mods: ModalitySet, n: int) -> list[dict]:
    gen = torch.Generator().manual_seed(3)
    masker = Masker(mods, MaskingConfig.from_dict({
        "input_tokens": 12, "target_tokens": 12,
        "mixture": [{"name": "all2all", "weight": 1.0, "input_alphas": 0.5, "target_alphas": 0.5}]}))
    out = []
    for _ in range(n):
        raw = {"rgb": torch.randn(4, 3, 16, 16, generator=gen),
               "tok_a": torch.randint(0, 300, (4, 16), generator=gen),
               "tok_b": torch.randint(0, 120, (4, 16), generator=gen)}
        seq = torch.randint(204, 500, (4, 12), generator=gen)
        seq[:, 7:] = 0
        seq[:, 6] = 3  # [EOS]
        raw["caption"] = seq
        out.append(masker(raw, generator=gen))
    return out


def _train(fast: bool, batches: list[dict], loss_type: str = "mod") -> list[float]:
    torch.manual_seed(0)
    model = build_model(_modalities(), dict(dim=32, encoder_depth=2, decoder_depth=2, num_heads=2)).train()
    if fast:
        assert prepare_training(model)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, betas=(0.9, 0.95), weight_decay=0.05, fused=True)
    losses = []
    for md in batches:
        out = model(md, num_encoder_tokens=12, num_decoder_tokens=12, loss_type=loss_type)
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(out.loss.item())
    return losses


@pytest.mark.parametrize("loss_type", ["mod", "token_reference"])
def test_same_losses_over_steps(loss_type: str) -> None:
    batches = _batches(_modalities(), 6)
    plain, fast = _train(False, batches, loss_type), _train(True, batches, loss_type)
    assert len(set(plain)) == len(plain)  # the model really trains: every step's loss differs
    assert fast == pytest.approx(plain, rel=2e-5, abs=2e-5)


def test_prepare_switches_the_loss_and_keeps_details_plain() -> None:
    model = build_model(_modalities(), dict(dim=32, encoder_depth=1, decoder_depth=1, num_heads=2)).train()
    assert prepare_training(model)
    assert model.target_loss is linear_cross_entropy
    md = _batches(_modalities(), 1)[0]
    out = model(md, num_encoder_tokens=12, num_decoder_tokens=12, return_details=True)
    rows = next(iter(out.decoder_rows.values()))
    assert rows.logits is not None and rows.logits.shape[-1] in (300, 120, 500)


@pytest.mark.parametrize("scale", [1.0, 0.25])
def test_linear_cross_entropy_gradients(scale: float) -> None:
    gen = torch.Generator().manual_seed(0)
    h = torch.randn(37, 16, generator=gen, dtype=torch.float64).float().requires_grad_()
    w = (torch.randn(211, 16, generator=gen) * 3).requires_grad_()  # large logits: the log-softmax is tested
    t = torch.randint(0, 211, (37,), generator=gen)
    (F.cross_entropy(F.linear(h, w), t) * scale).backward()
    gh, gw = h.grad.clone(), w.grad.clone()
    h.grad = w.grad = None
    loss = linear_cross_entropy(h, w, t)
    assert loss.item() == pytest.approx(F.cross_entropy(F.linear(h, w), t).item(), rel=1e-6)
    (loss * scale).backward()
    torch.testing.assert_close(h.grad, gh, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(w.grad, gw, rtol=1e-5, atol=1e-6)


def test_linear_cross_entropy_only_needed_grads_and_fallbacks() -> None:
    h = torch.randn(5, 8, requires_grad=True)
    w = torch.randn(20, 8)  # frozen table: no gradient asked of it
    t = torch.randint(0, 20, (5,))
    linear_cross_entropy(h, w, t).backward()
    assert h.grad is not None and w.grad is None
    with torch.no_grad():  # evaluation: the plain path, same value
        assert linear_cross_entropy(h, w, t).item() == pytest.approx(F.cross_entropy(h @ w.t(), t).item())
    hd, wd = h.detach().double().requires_grad_(), w.double()
    out = linear_cross_entropy(hd, wd, t)  # float64 takes the plain path
    assert out.dtype == torch.float64
    assert out.item() == pytest.approx(F.cross_entropy(hd @ wd.t(), t).item())


def test_tune_allocator_is_idempotent() -> None:
    first = tune_allocator()
    assert tune_allocator() is first
