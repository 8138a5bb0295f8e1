"""Compare fourm with outputs the reference computed (parity sets and release-format sets).

* :func:`verify` — a parity directory: ``config.json`` (``model`` + ``modalities``), ``weights.safetensors``,
  ``inputs.safetensors``, ``outputs.safetensors`` (losses, encoder / decoder activations, logits, gradients);
* :func:`verify_forward` — the same forward comparison for any loaded model and masked batch (used by
  :func:`fourm_core.compat.ml4m.release_check.verify_release` on a release set's ``fm_io`` files).

Expected keys: ``loss.<m>``, ``loss.total`` / ``loss.total_mod`` / ``loss.total_token``, ``encoder.output`` with
``encoder.slot_modality_index`` / ``slot_position`` / ``padding_mask`` / ``mod_id``, and per decoder modality
``decoder.<m>.{output, row_batch, row_position, target_ids, logsumexp, nll, logits_rows, logits_row_index,
top2_margin}``; ``grad.<param>`` / ``grad.norms`` (parity sets). Rows and slots are matched by (sample,
modality, position), so fourm's own slot order does not matter.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import torch
from safetensors.torch import load_file
from torch import Tensor

from fourm_registry import ModalitySet, modality_id

from ...model import FourM
from .conformance import load_ml4m_checkpoint, mod_dict_from_reference, read_config
from .weights import _rename

DEFAULT_TOLERANCES = {"losses_abs": 1e-4, "activations_abs": 1e-4, "logits_abs": 1e-4, "nll_abs": 1e-4,
                      "grads_rel": 1e-3}


@attrs.define
class Worst:
    """The largest error seen for one quantity, and where."""

    tol: float
    value: float = 0.0
    where: str = "-"

    def add(self, err: float, where: str) -> None:
        if not math.isfinite(err) or err > self.value:
            self.value = err if math.isfinite(err) else float("inf")
            self.where = where

    @property
    def ok(self) -> bool:
        return self.value <= self.tol


def max_abs(a: Tensor, b: Tensor) -> float:
    if a.shape != b.shape:
        return float("inf")
    return float((a.double() - b.double()).abs().max()) if a.numel() else 0.0


def _rel(a: Tensor, b: Tensor) -> float:
    if a.shape != b.shape:
        return float("inf")
    return float((a.double() - b.double()).norm() / max(float(b.double().norm()), 1e-12))


@attrs.define
class Report:
    """Worst errors per quantity, structural problems and the expected keys that were compared."""

    worst: dict[str, Worst]
    problems: list[str] = attrs.field(factory=list)
    seen: set[str] = attrs.field(factory=set)

    @property
    def passed(self) -> bool:
        return not self.problems and all(w.ok for w in self.worst.values())

    def parts(self) -> str:
        return " | ".join(f"{k} {x.value:.2e}/{x.tol:.0e}" for k, x in self.worst.items())

    def worst_where(self) -> str:
        return max(self.worst.values(), key=lambda x: x.value / x.tol if x.tol else 0.0).where


def _compare_encoder(report: Report, expected: Mapping[str, Tensor], enc: Any, order: Sequence[str],
                     names: Mapping[str, str]) -> None:
    def exp(key: str) -> Tensor:
        report.seen.add(key)
        return expected[key]

    e_out, e_mod = exp("encoder.output"), exp("encoder.slot_modality_index").long()
    e_pos, e_pad = exp("encoder.slot_position").long(), exp("encoder.padding_mask").bool()
    if "encoder.mod_id" in expected:
        want = torch.tensor([modality_id(n) for n in order])[e_mod.clamp(min=0)].masked_fill(e_pad, -1)
        if not torch.equal(exp("encoder.mod_id").long(), want.long()):
            report.problems.append("encoder.mod_id disagrees with the reference modality ids")
    our_index = {m: i for i, m in enumerate(enc.modalities)}
    if e_out.shape != enc.hidden.shape:
        report.problems.append(f"encoder.output shape {tuple(e_out.shape)} vs fourm {tuple(enc.hidden.shape)}")
        return
    w = report.worst["encoder"]
    for b in range(e_out.shape[0]):
        lookup = {(int(m), int(p)): s for s, (m, p) in
                  enumerate(zip(enc.modality_index[b].tolist(), enc.position[b].tolist())) if m >= 0}
        our_pad = enc.padding_mask[b].nonzero().flatten().tolist()
        ref_pad = e_pad[b].nonzero().flatten().tolist()
        if len(our_pad) != len(ref_pad):
            report.problems.append(f"sample {b}: {len(ref_pad)} reference padding slots, fourm {len(our_pad)}")
            continue
        for s in range(e_out.shape[1]):
            if e_pad[b, s]:
                continue
            ref_mod = order[int(e_mod[b, s])]
            slot = lookup.get((our_index.get(names[ref_mod], -1), int(e_pos[b, s])))
            if slot is None:
                report.problems.append(f"sample {b}: {ref_mod}[{int(e_pos[b, s])}] not among fourm's encoder slots")
                break
            w.add(max_abs(enc.hidden[b, slot].detach(), e_out[b, s]), f"encoder {ref_mod}[{int(e_pos[b, s])}]")
        for rs, os_ in zip(ref_pad, our_pad):
            w.add(max_abs(enc.hidden[b, os_].detach(), e_out[b, rs]), f"encoder padding slot {b},{rs}")


def _compare_decoder(report: Report, expected: Mapping[str, Tensor], rows_by_mod: Mapping[str, Any],
                     names: Mapping[str, str]) -> None:
    def exp(key: str) -> Tensor:
        report.seen.add(key)
        return expected[key]

    for ref_name, ours in names.items():
        pre = f"decoder.{ref_name}."
        if pre + "output" not in expected:
            continue
        rows = rows_by_mod.get(ours)
        r_b, r_p = exp(pre + "row_batch").long(), exp(pre + "row_position").long()
        report.seen.add(pre + "top2_margin")  # informative: how close a row's argmax is to a tie
        if rows is None:
            if r_b.numel():
                report.problems.append(f"fourm has no decoder rows for {ref_name}")
            continue
        lookup = {(int(b), int(p)): i for i, (b, p) in enumerate(zip(rows.batch.tolist(), rows.position.tolist()))}
        idx = [lookup.get((int(b), int(p)), -1) for b, p in zip(r_b, r_p)]
        if -1 in idx or len(lookup) != len(idx):
            report.problems.append(f"{ref_name}: decoder rows differ ({len(idx)} reference, {len(lookup)} fourm)")
            continue
        ix = torch.tensor(idx, dtype=torch.long)
        logits = rows.logits.detach()[ix]
        report.worst["decoder"].add(max_abs(rows.hidden.detach()[ix], exp(pre + "output")), pre + "output")
        if pre + "target_ids" in expected and not torch.equal(rows.targets[ix].long(), exp(pre + "target_ids").long()):
            report.problems.append(f"{ref_name}: target ids differ")
        lse = logits.logsumexp(-1)
        if pre + "logsumexp" in expected:
            report.worst["nll"].add(max_abs(lse, exp(pre + "logsumexp")), pre + "logsumexp")
        if pre + "nll" in expected:
            nll = lse - logits.gather(1, rows.targets[ix].long()[:, None])[:, 0]
            report.worst["nll"].add(max_abs(nll, exp(pre + "nll")), pre + "nll")
        if pre + "logits_rows" in expected:
            li = exp(pre + "logits_row_index").long()
            report.worst["logits"].add(max_abs(logits[li], exp(pre + "logits_rows")), pre + "logits_rows")


def verify_forward(model: FourM, md: Mapping[str, Any], expected: Mapping[str, Tensor], *,
                   names: Mapping[str, str], encoder_order: Sequence[str], num_encoder_tokens: int | None,
                   num_decoder_tokens: int | None, tolerances: Mapping[str, float], backward: bool = False,
                   report: Report | None = None) -> Report:
    """Run ``model`` on the masked batch ``md`` ('mod' loss, the reference's) and compare with ``expected``."""
    tol = {**DEFAULT_TOLERANCES, **tolerances}
    if report is None:
        report = Report({k: Worst(tol[t]) for k, t in [("loss", "losses_abs"), ("encoder", "activations_abs"),
                                                        ("decoder", "activations_abs"), ("nll", "nll_abs"),
                                                        ("logits", "logits_abs")]})
    model.eval()
    with torch.set_grad_enabled(backward):
        out = model(dict(md), num_encoder_tokens=num_encoder_tokens, num_decoder_tokens=num_decoder_tokens,
                    loss_type="mod_reference", return_details=True)
    if backward:
        out.loss.backward()
    for key in ("loss.total", "loss.total_mod"):
        if key in expected:
            report.seen.add(key)
            report.worst["loss"].add(max_abs(out.loss.detach().reshape(1), expected[key].reshape(1)), key)
    if "loss.total_token" in expected:
        report.seen.add("loss.total_token")
        with torch.no_grad():
            tok = model(dict(md), num_encoder_tokens=num_encoder_tokens, num_decoder_tokens=num_decoder_tokens,
                        loss_type="token_reference")
        report.worst["loss"].add(max_abs(tok.loss.reshape(1), expected["loss.total_token"].reshape(1)),
                                 "loss.total_token")
    for ref_name, ours in names.items():
        key = f"loss.{ref_name}"
        if key in expected:
            report.seen.add(key)
            if ours not in out.losses:
                report.problems.append(f"no loss for {ref_name}")
                continue
            report.worst["loss"].add(max_abs(out.losses[ours].detach().reshape(1), expected[key].reshape(1)), key)
    if "encoder.output" in expected:
        _compare_encoder(report, expected, out.encoder, encoder_order, names)
    _compare_decoder(report, expected, out.decoder_rows or {}, names)
    return report


def _compare_grads(report: Report, model: FourM, expected: Mapping[str, Tensor], ref: Mapping[str, Any],
                   names: Mapping[str, str]) -> None:
    params = dict(model.named_parameters())
    tied = ref.get("weights", {}).get("tied_aliases", {})
    w = report.worst["grad"]

    def our_param(ref_key: str):
        return params.get(_rename(tied.get(ref_key, ref_key), names))

    for key in expected:
        if key.startswith("grad.") and key != "grad.norms":
            report.seen.add(key)
            p = our_param(key[len("grad."):])
            if p is None:
                report.problems.append(f"{key}: no such parameter")
                continue
            w.add(_rel(p.grad if p.grad is not None else torch.zeros_like(p), expected[key]), key)
    if "grad.norms" in expected:
        report.seen.add("grad.norms")
        norms, names_list = expected["grad.norms"], ref.get("grad_norm_names", [])
        if len(names_list) != norms.numel():
            report.problems.append("grad.norms and grad_norm_names differ in length")
            return
        mine = []
        for n in names_list:
            p = our_param(n)
            mine.append(float("nan") if p is None else (0.0 if p.grad is None else float(p.grad.norm())))
        w.add(_rel(torch.tensor(mine, dtype=torch.float64), norms.double()), "grad.norms")


def unchecked(report: Report, expected: Mapping[str, Tensor]) -> None:
    """Record expected keys nothing compared (a set with quantities this verifier does not know fails)."""
    left = sorted(k for k in expected if k not in report.seen)
    if left:
        report.problems.append(f"unchecked output keys: {', '.join(left[:5])}")


def verify(directory: str | Path, *, installed: ModalitySet | None = None) -> tuple[bool, str]:
    """Run the reference batch of a parity ``directory`` and compare every quantity of ``outputs.safetensors``.

    Returns (passed, one-line summary)."""
    d = Path(directory)
    ref = read_config(d)
    tol = {**DEFAULT_TOLERANCES, **ref.get("tolerances_suggested", {})}
    model = load_ml4m_checkpoint(d / ref.get("weights", {}).get("file", "weights.safetensors"), ref,
                                 installed=installed)
    names: dict[str, str] = model.ml4m_names
    expected = load_file(str(d / "outputs.safetensors"))
    md = mod_dict_from_reference(load_file(str(d / "inputs.safetensors")), names)
    model.zero_grad(set_to_none=True)
    report = Report({k: Worst(tol[t]) for k, t in [("loss", "losses_abs"), ("encoder", "activations_abs"),
                                                    ("decoder", "activations_abs"), ("nll", "nll_abs"),
                                                    ("logits", "logits_abs"), ("grad", "grads_rel")]})
    verify_forward(model, md, expected, names=names, encoder_order=ref.get("encoder_modality_order", []),
                   num_encoder_tokens=ref.get("num_encoder_tokens"), num_decoder_tokens=ref.get("num_decoder_tokens"),
                   tolerances=tol, backward=True, report=report)
    _compare_grads(report, model, expected, ref, names)
    unchecked(report, expected)
    summary = (f"ml4m verify {d.name}: {'PASS' if report.passed else 'FAIL'} | {report.parts()}"
               f" | worst rel-to-tol: {report.worst_where()}")
    if report.problems:
        summary += " | problems: " + "; ".join(report.problems[:5])
    return report.passed, summary
