"""Check a released tokenizer directory against reference outputs stored beside it.

``<dir>`` holds ``config.json`` + ``model.safetensors`` and ``io.safetensors`` (+ ``io.json``) with, per input
prefix ``P`` (every ``P.input`` key): ``P.latent``, ``P.quant``, ``P.quant_from_tokens``, ``P.tokens``,
``P.top2_margin`` and, for a VQ-VAE, ``P.decoded``; for a DiVAE, sampler runs ``P.<run>.decoded`` with their
noise (``P.ddim.initial_noise`` for DDIM, ``P.default.noise<i>`` in draw order for the config's own sampler)
and timesteps. Checks (float32): latents, quantised latents, margins and VQ-VAE decodes within 1e-5; token ids
exact except where the stored top-2 margin is below 1e-4; diffusion decodes within 1e-4, and, when the diffusion
module's sampler offers a ``trace`` hook, the sampled timesteps (exact) and every stored per-step sample / model
output (``P.<run>.step<i>.sample`` / ``.model_output``, 1e-4); the training schedule's ᾱ table
(``scheduler.train.alphas_cumprod``, 1e-5) when the module offers ``build_scheduler(config)``. Stored tensors no
check covers are listed in the summary as unchecked.
"""

from __future__ import annotations

import inspect
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..base import TokenizerError
from .config import model_type
from .hub import from_pretrained, read_config

TOL_LATENT = 1e-5
TOL_DIFFUSION = 1e-4
MARGIN_EXEMPT = 1e-4
IO_TENSORS = "io.safetensors"
IO_JSON = "io.json"
SCHEDULE_KEY = "scheduler.train.alphas_cumprod"


@dataclass
class VerifyReport:
    """``errors``: stored key → max abs error (token keys: number of mismatches outside the exemption);
    ``problems``: failed checks and what could not run; ``unchecked``: stored keys no check read."""

    directory: Path
    errors: dict[str, float] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems

    def compare(self, key: str, got: torch.Tensor, want: torch.Tensor, tol: float) -> None:
        if tuple(got.shape) != tuple(want.shape):
            self.problems.append(f"{key}: shape {tuple(got.shape)}, reference {tuple(want.shape)}")
            self.lines.append(f"  {key}: shape mismatch")
            return
        err = float((got.detach().float().cpu() - want.float()).abs().max()) if want.numel() else 0.0
        self.errors[key] = err
        ok = err <= tol
        self.lines.append(f"  {key}: max |diff| {err:.3g} (tol {tol:g}) {'ok' if ok else 'FAIL'}")
        if not ok:
            self.problems.append(f"{key}: max |diff| {err:.3g} > {tol:g}")

    def summary(self) -> str:
        head = f"{self.directory}: {'PASS' if self.passed else 'FAIL'}"
        tail = [f"  unchecked: {', '.join(self.unchecked)}"] if self.unchecked else []
        probs = [f"  problem: {p}" for p in self.problems]
        return "\n".join([head, *self.lines, *probs, *tail])


def _prefixes(stored: dict[str, torch.Tensor]) -> list[str]:
    return sorted(k[: -len(".input")] for k in stored if k.endswith(".input"))


def _check_tokens(rep: VerifyReport, key: str, got: torch.Tensor, want: torch.Tensor, margin: torch.Tensor | None):
    if tuple(got.shape) != tuple(want.shape):
        rep.problems.append(f"{key}: shape {tuple(got.shape)}, reference {tuple(want.shape)}")
        return
    diff = got.cpu() != want
    exempt = (margin < MARGIN_EXEMPT) if margin is not None else torch.zeros_like(diff)
    bad = int((diff & ~exempt).sum())
    rep.errors[key] = float(bad)
    rep.lines.append(f"  {key}: {int(diff.sum())} of {diff.numel()} ids differ, {int(exempt.sum())} exempt "
                     f"(margin < {MARGIN_EXEMPT:g}) {'ok' if bad == 0 else 'FAIL'}")
    if bad:
        rep.problems.append(f"{key}: {bad} token ids differ where the reference margin is >= {MARGIN_EXEMPT:g}")


def _diffusion_runs(rep: VerifyReport, model, prefix: str, stored: dict[str, torch.Tensor], used: set[str]) -> None:
    from .vqvae import _diffusion_module

    runs = sorted({m.group(1) for k in stored if (m := re.fullmatch(re.escape(prefix) + r"\.(\w+)\.decoded", k))})
    quant = stored[f"{prefix}.quant_from_tokens"]
    for run in runs:
        base = f"{prefix}.{run}"
        want = stored[f"{base}.decoded"]
        steps_key = f"{base}.timesteps"
        if steps_key not in stored:
            rep.problems.append(f"{base}: no {steps_key} (the number of sampling steps)")
            continue
        noises = sorted((k for k in stored if re.fullmatch(re.escape(base) + r"\.noise\d+", k)),
                        key=lambda k: int(k.rsplit("noise", 1)[1]))
        if f"{base}.initial_noise" in stored:  # deterministic DDIM: only the start noise is drawn
            noise, scheduler, spacing = stored[f"{base}.initial_noise"], "ddim", "trailing"
            used.add(f"{base}.initial_noise")
        elif noises:  # the config's own sampler: start noise then one draw per stochastic step
            noise, scheduler, spacing = [stored[k] for k in noises], None, None
            used.update(noises)
        else:
            rep.problems.append(f"{base}: no stored noise ({base}.initial_noise or {base}.noise<i>)")
            continue
        used.update({f"{base}.decoded", steps_key})
        h, w = want.shape[-2:]
        steps: dict[int, tuple[int, torch.Tensor, torch.Tensor]] = {}
        try:
            diffusion = _diffusion_module()
            extra = {}
            if "trace" in inspect.signature(diffusion.diffusion_decode).parameters:  # optional per-step hook
                extra["trace"] = lambda i, t, x, out: steps.__setitem__(i, (int(t), x.detach().clone(),
                                                                             out.detach().clone()))
            got = diffusion.diffusion_decode(model.decoder, quant, model.config, steps=int(stored[steps_key].numel()),
                                             scheduler=scheduler, noise=noise, image_size=h if h == w else (h, w),
                                             timestep_spacing=spacing, **extra)
        except TokenizerError as exc:
            rep.problems.append(f"{base}: {exc}")
            continue
        if extra:
            ts = torch.tensor([steps[i][0] for i in sorted(steps)], dtype=stored[steps_key].dtype)
            rep.compare(steps_key, ts, stored[steps_key], 0.0)
            for i, (_, x, out) in steps.items():
                for name, got_i in (("sample", x), ("model_output", out)):
                    key = f"{base}.step{i}.{name}"
                    if key in stored:
                        used.add(key)
                        rep.compare(key, got_i, stored[key], TOL_DIFFUSION)
        rep.compare(f"{base}.decoded", got, want, TOL_DIFFUSION)


def _check_schedule(rep: VerifyReport, model, want: torch.Tensor, used: set[str]) -> None:
    """The training scheduler's ᾱ table, when the diffusion module exposes ``build_scheduler(config)``."""
    from .vqvae import _diffusion_module

    build = getattr(_diffusion_module(), "build_scheduler", None)
    if build is None:
        return
    used.add(SCHEDULE_KEY)
    rep.compare(SCHEDULE_KEY, torch.as_tensor(build(model.config).alphas_cumprod), want, TOL_LATENT)


def check_tokenizer(directory: str | os.PathLike) -> VerifyReport:
    """Run every check (see the module docstring) and return the detailed report."""
    from safetensors.torch import load_file

    path = Path(directory)
    rep = VerifyReport(path)
    io_path = path / IO_TENSORS
    if not io_path.is_file():
        rep.problems.append(f"no {IO_TENSORS} in {path} (the stored reference outputs)")
        return rep
    stored = load_file(str(io_path))
    calls = json.loads((path / IO_JSON).read_text()) if (path / IO_JSON).is_file() else {}
    try:
        kind = model_type(read_config(path))
        encoder_only = False
        try:
            model = from_pretrained(path)
        except TokenizerError as exc:
            if kind != "DiVAE" or "diffusion decoder not available" not in str(exc):
                raise
            rep.problems.append(f"{exc}")
            model, encoder_only = from_pretrained(path, encoder_only=True), True
    except TokenizerError as exc:
        rep.problems.append(f"cannot load: {exc}")
        return rep
    rep.lines.append(f"  {kind} ({'encoder only' if encoder_only else 'full'}), "
                     f"{len(calls.get('inputs', []))} input set(s) described in {IO_JSON}")
    used: set[str] = set()
    with torch.no_grad():
        for prefix in _prefixes(stored):
            k = {name: f"{prefix}.{name}" for name in
                 ("input", "latent", "quant", "quant_from_tokens", "tokens", "top2_margin", "decoded")}
            used.add(k["input"])
            try:
                latent = model.encode_latent(stored[k["input"]])
                q = model.quantize_latent(latent)
            except (TokenizerError, RuntimeError, ValueError) as exc:
                rep.problems.append(f"{prefix}: encode failed: {exc}")
                continue
            margin = stored.get(k["top2_margin"])
            for name, got, tol in (("latent", latent, TOL_LATENT), ("top2_margin", q.margin, TOL_LATENT)):
                if k[name] in stored:
                    used.add(k[name])
                    rep.compare(k[name], got, stored[k[name]], tol)
            if k["tokens"] in stored:
                used.add(k["tokens"])
                ref_tokens = stored[k["tokens"]]
                _check_tokens(rep, k["tokens"], q.tokens, ref_tokens, margin)
                if k["quant"] in stored:  # where the ids agree, the quantised vectors must too
                    used.add(k["quant"])
                    same = (q.tokens.cpu() == ref_tokens) if q.tokens.shape == ref_tokens.shape else None
                    if same is not None and q.quant.shape == stored[k["quant"]].shape:
                        mask = same.unsqueeze(1) if same.dim() == 3 else same.repeat_interleave(
                            q.quant.shape[1] // same.shape[1], dim=1)
                        rep.compare(k["quant"], q.quant.cpu() * mask, stored[k["quant"]] * mask, TOL_LATENT)
                    else:
                        rep.compare(k["quant"], q.quant, stored[k["quant"]], TOL_LATENT)
                quant = model.tokens_to_embedding(ref_tokens)
                if k["quant_from_tokens"] in stored:
                    used.add(k["quant_from_tokens"])
                    rep.compare(k["quant_from_tokens"], quant, stored[k["quant_from_tokens"]], TOL_LATENT)
                if k["decoded"] in stored and hasattr(model, "decode_quant") and kind == "VQVAE":
                    used.add(k["decoded"])
                    rep.compare(k["decoded"], model.decode_quant(quant), stored[k["decoded"]], TOL_LATENT)
            if kind == "DiVAE" and not encoder_only and k["quant_from_tokens"] in stored:
                _diffusion_runs(rep, model, prefix, stored, used)
        if kind == "DiVAE" and not encoder_only and SCHEDULE_KEY in stored:
            _check_schedule(rep, model, stored[SCHEDULE_KEY], used)
    rep.unchecked = sorted(set(stored) - used)
    return rep


def verify_tokenizer(directory: str | os.PathLike) -> tuple[bool, str]:
    """``(passed, summary)`` of :func:`check_tokenizer` for ``directory``."""
    rep = check_tokenizer(directory)
    return rep.passed, rep.summary()
