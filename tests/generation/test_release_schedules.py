"""Our chained schedule builder against the released 4M sampler's recorded schedules
(``../shared/conformance/ml4m_release/schedules.json``; ``FOURM_RELEASE_DIR`` points elsewhere), and the
checker itself on files written here."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import pytest

from fourm_core.compat.release_schedules import REPLACED_ERRORS, verify_schedules
from fourm_core.generation import GenerationError, build_chained_schedule

RELEASE = Path(os.environ.get("FOURM_RELEASE_DIR")
               or Path(__file__).resolve().parents[3] / "shared" / "conformance" / "ml4m_release")
SCHEDULES = RELEASE / "schedules.json"
needs_release = pytest.mark.requires(
    "conformance", available=SCHEDULES.exists(),
    reason=f"reference release set {RELEASE} (schedules.json) not present; put shared/ beside the checkout or "
           f"set FOURM_RELEASE_DIR")

KW = {"cond_domains": ["rgb@224"], "target_domains": ["tok_depth@224"], "tokens_per_target": [16],
      "autoregression_schemes": ["maskgit"], "decoding_steps": [4], "token_decoding_schedules": ["cosine"],
      "temps": [2.0], "temp_schedules": ["linear"], "cfg_scales": [3.0], "cfg_schedules": ["constant"]}


def _write(tmp_path, settings) -> Path:
    path = tmp_path / "schedules.json"
    path.write_text(json.dumps({"settings": settings}))
    return path


def _entry(name="one", **changes):
    kwargs = {**KW, **changes}
    steps = [s.as_dict() for s in build_chained_schedule(**kwargs)]
    return {"name": name, "kwargs": kwargs, "steps": steps}


@needs_release
def test_every_recorded_schedule_matches():
    passed, summary = verify_schedules(SCHEDULES)
    assert passed, {n: r["detail"] for n, r in summary["results"].items() if not r["passed"]}
    assert summary["passed"] == summary["entries"] >= 15


@needs_release
def test_a_changed_token_count_fails(tmp_path):
    data = json.loads(SCHEDULES.read_text())
    entry = next(e for e in data["settings"] if "steps" in e and e["steps"][0]["num_tokens"])
    entry["steps"][0]["num_tokens"] += 1
    path = tmp_path / "schedules.json"
    path.write_text(json.dumps(data))
    passed, summary = verify_schedules(path)
    assert not passed and summary["failed"] == [entry["name"]]
    assert "step 0: num_tokens" in summary["results"][entry["name"]]["detail"]


def test_literal_plan_of_one_target():
    """16 tokens, 4 cosine steps, linear temperature from 2: counts [2, 6, 6, 2], temperatures 2, then
    2 (16 - c)/16 for c = 2, 8, 14 committed before the step."""
    plan = build_chained_schedule(**KW)
    assert [s.num_tokens for s in plan] == [2, 6, 6, 2]
    assert [s.temperature for s in plan] == pytest.approx([2.0, 1.75, 1.0, 0.25])
    assert {s.cfg_scale for s in plan} == {3.0} and {s.cfg_cond_domains for s in plan} == {("rgb@224",)}


def test_checker_on_files_written_here(tmp_path):
    good = _entry()
    assert verify_schedules(_write(tmp_path, [good]))[0]
    for field, value in (("temperature", 1.9), ("cfg_scale", 2.5), ("scheme", "roar"), ("cfg_cond_domains", [])):
        bad = copy.deepcopy(good)
        bad["steps"][1][field] = value
        passed, summary = verify_schedules(_write(tmp_path, [bad]))
        assert not passed and f"step 1: {field}" in summary["results"]["one"]["detail"], field
    short = copy.deepcopy(good)
    short["steps"].pop()
    assert "4 steps, the reference has 3" in verify_schedules(_write(tmp_path, [short]))[1]["results"]["one"]["detail"]


def test_recorded_errors_pass_only_when_replaced_on_purpose(tmp_path):
    """An int scale and the cosine guidance schedule are replaced by working behaviour (listed in
    REPLACED_ERRORS); any other recorded exception must be an exception of ours too."""
    assert {t for t, _, _ in REPLACED_ERRORS} == {"NotImplementedError", "UnboundLocalError"}
    cosine = {"name": "cos", "kwargs": {**KW, "cfg_schedules": ["cosine"]}, "error": {"type": "NotImplementedError"}}
    as_int = {"name": "int", "kwargs": {**KW, "cfg_scales": [2]}, "error": {"type": "UnboundLocalError"}}
    assert verify_schedules(_write(tmp_path, [cosine, as_int]))[0]
    # the same exception type recorded for arguments it does not apply to is not excused
    wrong = {"name": "w", "kwargs": KW, "error": {"type": "NotImplementedError"}}
    passed, summary = verify_schedules(_write(tmp_path, [wrong]))
    assert not passed and "the reference raised NotImplementedError" in summary["results"]["w"]["detail"]
    # both reject an unknown schedule
    both = {"name": "b", "kwargs": {**KW, "token_decoding_schedules": ["zigzag"]}, "error": {"type": "ValueError"}}
    assert verify_schedules(_write(tmp_path, [both]))[0]


def test_bad_files_and_keys_raise(tmp_path):
    with pytest.raises(GenerationError, match="does not exist"):
        verify_schedules(tmp_path / "missing.json")
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(GenerationError, match="has no 'settings' list"):
        verify_schedules(tmp_path / "x.json")
    bad = {"name": "k", "kwargs": {**KW, "cfg_sched": ["constant"]}, "steps": []}
    with pytest.raises(GenerationError, match=r"schedule setting 'k' kwargs: unknown key\(s\) 'cfg_sched'"):
        verify_schedules(_write(tmp_path, [bad]))


def test_chained_builder_semantics():
    """ROAR ignores the token schedule name (linear); an autoregressive target is one entry and does not
    join the grown conditions; cosine guidance rises to the scale; lists too short name the list."""
    kw = {"cond_domains": ["rgb"], "target_domains": ["a", "cap", "b"], "tokens_per_target": [10, 99, 4],
          "autoregression_schemes": ["roar", "autoregressive", "maskgit"], "decoding_steps": [4, None, 2],
          "token_decoding_schedules": ["cosine", None, "linear"], "temps": [1.0, 0.5, 1.0],
          "temp_schedules": ["constant"] * 3, "cfg_scales": [2, 1.0, [2.0, 0.5]],
          "cfg_schedules": ["cosine", "constant", "constant"], "cfg_grow_conditioning": True}
    plan = build_chained_schedule(**kw)
    assert [(s.target_domain, s.num_tokens) for s in plan] == [("a", 3), ("a", 3), ("a", 2), ("a", 2),
                                                               ("cap", None), ("b", 2), ("b", 2)]
    assert plan[3].cfg_scale == 2.0 and 1.0 < plan[0].cfg_scale < plan[1].cfg_scale < plan[2].cfg_scale < 2.0
    assert plan[4].cfg_cond_domains == ("rgb", "a") and plan[5].cfg_cond_domains == ("rgb", "a")
    assert plan[5].cfg_scale == (2.0, 0.5) and plan[5].as_dict()["cfg_scale"] == [2.0, 0.5]
    with pytest.raises(GenerationError, match=r"3 target_domains but only \{'temps': 2\}"):
        build_chained_schedule(**{**kw, "temps": [1.0, 1.0]})


def test_the_sampler_decodes_by_the_chained_plan(tiny_model, pixels, monkeypatch):
    """chained_targets gives the sampler the same chain build_chained_schedule plans: per step the committed
    token counts and the temperatures the sampler samples at equal the plan's (depth: 16 tokens, 5 cosine
    steps at onex temperatures; gvec: 4 tokens, 3 ROAR steps at linear temperatures; then a caption)."""
    from fourm_core.generation import Sampler, chained_targets
    from fourm_core.generation import sampler as sampler_mod

    kw = {"cond_domains": ["rgb"], "target_domains": ["depth", "gvec", "caption"],
          "autoregression_schemes": ["maskgit", "roar", "autoregressive"], "decoding_steps": [5, 3, None],
          "token_decoding_schedules": ["cosine", "cosine", None], "temps": [3.0, 2.0, 0.5],
          "temp_schedules": ["onex:0.5:0.5", "linear", "constant"], "cfg_scales": [2.0, 1.0, 1.5],
          "cfg_schedules": ["constant"] * 3, "cfg_grow_conditioning": True}
    plan = build_chained_schedule(tokens_per_target=[16, 4, 11], **kw)
    temps = []
    orig = sampler_mod.sample_tokens

    def spy(logits, temperature, *args, **kw):
        temps.append(temperature)
        return orig(logits, temperature, *args, **kw)

    monkeypatch.setattr(sampler_mod, "sample_tokens", spy)
    sampler = Sampler(tiny_model, int8_proposals=False)
    targets = chained_targets(**kw)
    assert targets[2].guidance_conditions == ("rgb", "depth", "gvec") and targets[2].guidance == 1.5
    steps = list(sampler.iterate({"rgb": pixels}, [t.replace(max_new_tokens=2) if t.modality == "caption" else t
                                                   for t in targets], seed=0))
    iterative = [s for s in steps if s.modality != "caption"]
    counts = [int(s.committed[0].sum()) for s in iterative]
    prev = [0 if i == 0 or iterative[i - 1].modality != s.modality else counts[i - 1]
            for i, s in enumerate(iterative)]
    assert [(s.modality, c - p) for s, c, p in zip(iterative, counts, prev)] == [
        (p.target_domain, p.num_tokens) for p in plan[:-1]]
    assert temps[: len(plan) - 1] == pytest.approx([p.temperature for p in plan[:-1]])
    assert temps[len(plan) - 1:] == [0.5, 0.5]  # the caption's two tokens
