"""The plugin template (examples/fourm-plugin-template) is really pip-installed into a fresh virtualenv; there
it labels, tokenizes and trains one 4M step through the real `fourm` commands, and its own tests pass.

This is how the template's own tests (``examples/fourm-plugin-template/tests``) run in the default run: they
need the plugin installed (its entry point), which the development install does not do, so ``examples/`` is
not in ``testpaths`` (collected there, they would fail to find the ``luminance`` modality)."""

from __future__ import annotations

import json
import re
import subprocess
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "examples" / "fourm-plugin-template"

SCRIPT = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    import numpy as np
    from click.testing import CliRunner
    from PIL import Image
    from fourm_registry import get_manager
    from fourm_registry.cli import cli
    from fourm_core.testing import sample_photos

    work = Path(sys.argv[1])
    get_manager().register_commands(cli)
    runner = CliRunner()

    def fourm(*args):
        r = runner.invoke(cli, [str(a) for a in args], catch_exceptions=False)
        assert r.exit_code == 0, (args, r.output)
        return r.output

    mods = {m["name"]: m for m in json.loads(fourm("modalities", "--json"))}
    assert mods["luminance"]["plugin"] == "fourm-luminance", mods.get("luminance")
    photos = work / "photos"
    photos.mkdir()
    for i, img in enumerate(sample_photos(6)):
        Image.fromarray(img).save(photos / f"p{i}.png")
    store = work / "data.zarr"
    fourm("ingest", photos, store, "--samples-per-shard", 4)
    fourm("label", store, "-m", "luminance", "--no-progress")
    (work / "tok.yaml").write_text("steps: 2\\nbatch_size: 2\\ntokenizer: {dim: 32, depth: 1, num_heads: 2, codebook_size: 64}\\n")
    fourm("train-tokenizer", "--modality", "luminance", "--data", store, "--out", work / "toks",
          "--config", work / "tok.yaml", "--cpu")
    fourm("tokenize", store, "-m", "luminance", "--crops", 1, "--tokenizers", work / "toks", "--no-progress")
    (work / "train.yaml").write_text(f'''
    out_dir: {work / "run"}
    model: {{preset: debug}}
    modalities: [luminance]
    datasets: [{{path: {store}}}]
    tokenizers: {work / "toks"}
    masking: {{input_tokens: [8, 8], target_tokens: [8, 8], mixture: [{{input_alphas: 1.0, target_alphas: 1.0}}]}}
    batch_size: 2
    max_steps: 1
    eval_every: 0
    save_every: 0
    ''')
    fourm("train", "--config", work / "train.yaml")
    cfg = json.loads((work / "run" / "final" / "config.json").read_text())
    print(json.dumps(cfg))
""")


def test_template_installs_labels_tokenizes_and_trains(fresh_venv, subprocess_env, tmp_path):
    py = fresh_venv
    inst = subprocess.run([str(py), "-m", "pip", "install", "--no-deps", "-q", str(TEMPLATE)],
                          capture_output=True, text=True, env=subprocess_env)
    assert inst.returncode == 0, inst.stderr
    try:
        run = subprocess.run([str(py), "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True, env=subprocess_env)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-6000:]
        saved = json.loads(run.stdout.strip().splitlines()[-1])
        assert "luminance" in json.dumps(saved["modalities"])
        tests = subprocess.run([str(py), "-m", "pytest", "-v", "-p", "no:cacheprovider", str(TEMPLATE / "tests")],
                               capture_output=True, text=True, env=subprocess_env, cwd=tmp_path)
        assert tests.returncode == 0, tests.stdout[-4000:] + tests.stderr[-2000:]
        # they really ran: a run whose tests all skip exits 0 too, and proves nothing
        passed = set(re.findall(r"::(\w+) PASSED", tests.stdout))
        assert passed >= {"test_luminance_of_pure_colours", "test_spec_is_registered_by_its_plugin",
                          "test_storage_round_trip", "test_labeler_output_matches_storage",
                          "test_transform_follows_crop_and_flip", "test_tokenizer_encode_decode_shapes"}, tests.stdout
    finally:
        subprocess.run([str(py), "-m", "pip", "uninstall", "-y", "-q", "fourm-luminance"], capture_output=True, env=subprocess_env)
