"""Every mistake a newcomer makes on the command line reads as one ``error: ...`` line (exit status 2) that names
what is wrong and the fix; an unexpected exception (a bug) keeps its traceback.

The walk runs the real ``fourm`` group (every installed plugin's commands) in-process with click's runner, and
``python -m fourm_trainers.train`` / ``fourm`` as subprocesses where the entry point itself is under test."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from fourm_registry import FourmError
from fourm_registry import cli as fcli


@pytest.fixture(scope="module")
def fourm():
    """The ``fourm`` group with every installed plugin's commands, as the executable builds it."""
    from fourm_registry import get_manager

    if "train" not in fcli.cli.commands:
        get_manager().register_commands(fcli.cli)
    return fcli.cli


def one_error_line(res, *needles: str) -> str:
    """The result is exit status 2 with exactly one ``error:`` line (no traceback) holding every needle."""
    text = res.output
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert res.exit_code == 2, f"exit {res.exit_code}: {text}\n{res.exc_info}"
    assert "Traceback" not in text, text
    assert len(lines) == 1 and lines[0].startswith("error: "), text
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    return lines[0]


def run(fourm, *args: str):
    return CliRunner().invoke(fourm, list(args))


@pytest.fixture()
def photo_file(tmp_path):
    from skimage import data

    path = tmp_path / "photo.jpg"
    Image.fromarray(data.astronaut()).save(path)
    return path


# ------------------------------------------------------------------------------------------------ training
def test_train_config_by_name_path_and_unknown(fourm, tmp_path, monkeypatch):
    from fourm_trainers.config import TrainConfig, config_path, shipped_configs

    shipped = shipped_configs()
    assert {"debug_cpu", "4m7_base_gpu", "4m21_base_gpu"} <= set(shipped)
    monkeypatch.chdir(tmp_path)  # outside the checkout: by name, and by the path the source tree has them at
    for name, path in shipped.items():
        assert config_path(name) == path == config_path(f"trainers/configs/{name}.yaml") == config_path(f"{name}.yaml")
    assert TrainConfig.from_yaml("debug_cpu", ["batch_size=2"]).batch_size == 2
    assert TrainConfig.from_yaml("trainers/configs/debug_cpu.yaml").max_steps > 0
    res = run(fourm, "configs")
    assert res.exit_code == 0 and all(n in res.output for n in shipped), res.output
    assert "max_steps" in run(fourm, "configs", "--show", "debug_cpu").output
    one_error_line(run(fourm, "train", "--config", "debug_gpu"), "debug_gpu", "does not exist", "debug_cpu",
                   "fourm configs")
    one_error_line(run(fourm, "configs", "--show", "nope"), "nope", "fourm configs")


def test_train_yaml_errors(fourm, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("out_dir: runs/x\nmodel: {preset: debug\nbatch_size: 2\n")
    one_error_line(run(fourm, "train", "--config", str(bad)), str(bad), "invalid YAML", "line")
    one_error_line(run(fourm, "train", "--config", "debug_cpu", "--set", "datasets=[{path: data.zarr"),
                   "--set", "datasets=", "not valid YAML", "quote")
    one_error_line(run(fourm, "train", "--config", "debug_cpu", "--set", "batch_sise=2"), "batch_sise")


def test_python_m_train_prints_one_line(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    bad = tmp_path / "bad.yaml"
    bad.write_text("out_dir: [unclosed\n")
    res = subprocess.run([sys.executable, "-m", "fourm_trainers.train", "--config", str(bad)], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert res.stderr.strip().count("\n") == 0 and res.stderr.startswith("error: ") and "invalid YAML" in res.stderr
    res = subprocess.run([sys.executable, "-m", "fourm_trainers.train", "--config", "debug_cpu", "--set",
                          "max_steps=-1"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and res.stderr.startswith("error: ") and "max_steps" in res.stderr, res.stderr


def test_train_tokenizer_mistakes(fourm, tmp_path):
    out = tmp_path / "toks"
    (out / "_runs" / "tok_rgb" / "checkpoints" / "step_4").mkdir(parents=True)
    (out / "_runs" / "tok_rgb" / "checkpoints" / "step_4" / "train_state.json").write_text('{"step": 4}')
    # a missing store is reported as such, not as the checkpoints already in --out
    one_error_line(run(fourm, "train-tokenizer", "--modality", "tok_rgb", "--data", str(tmp_path / "nope.zarr"),
                       "--out", str(out)), "nope.zarr", "does not exist", "fourm ingest")
    assert not (tmp_path / "nope.zarr").exists()
    bad = tmp_path / "tok.yaml"
    bad.write_text("steps: [1\n")
    one_error_line(run(fourm, "train-tokenizer", "--modality", "tok_rgb", "--data", str(tmp_path), "--out",
                       str(out), "--config", str(bad)), "tok.yaml", "invalid YAML")
    one_error_line(run(fourm, "train-tokenizer", "--modality", "tok_rgb", "--data", str(tmp_path), "--out",
                       str(out), "--minutes", "1", "--steps", "3"), "--minutes")


# ---------------------------------------------------------------------------------------------- data jobs
@pytest.mark.parametrize("command", [["label", "-m", "canny_edge"], ["tokenize", "-m", "tok_rgb", "--tokenizers", "."],
                                     ["inspect"]])
def test_jobs_on_a_missing_store_leave_nothing_behind(fourm, tmp_path, command, monkeypatch):
    monkeypatch.chdir(tmp_path)
    store = str(tmp_path / "nope.zarr")
    one_error_line(run(fourm, command[0], store, *command[1:]), "nope.zarr", "does not exist", "fourm ingest")
    assert not Path(store).exists()


def test_corrupt_zarr_json(fourm, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(3):
        Image.fromarray(np.full((40, 40, 3), 60 * i, np.uint8)).save(photos / f"{i}.png")
    store = tmp_path / "d.zarr"
    assert run(fourm, "ingest", str(photos), str(store)).exit_code == 0
    (store / "zarr.json").write_text('{"zarr_format": 3, "node_type": "gro')
    one_error_line(run(fourm, "inspect", str(store)), "d.zarr", "zarr.json", "not valid JSON", "re-create")


def test_device_without_a_gpu(fourm, tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    store = tmp_path / "d.zarr"
    store.mkdir()
    (store / "zarr.json").write_text("{}")
    one_error_line(run(fourm, "label", str(store), "-m", "canny_edge", "--device", "cuda"), "--device cuda",
                   "no CUDA", "--device cpu")
    one_error_line(run(fourm, "generate", "--model", str(tmp_path), "--out", "tok_rgb", "--save", str(tmp_path),
                       "--device", "cuda:0"), "--device cuda:0", "--device cpu")
    with pytest.raises(FourmError, match="not a torch device"):
        fcli.check_device("gpu")


# ------------------------------------------------------------------------------------------------ generate
def test_generate_mistakes(fourm, checkpoint_dir, photo_file, tmp_path):
    save = str(tmp_path / "out")
    base = ["generate", "--out", "depth", "--save", save]
    one_error_line(run(fourm, *base, "--model", str(tmp_path / "runs" / "debug" / "final")), "--model",
                   "does not exist", "fourm train")
    one_error_line(run(fourm, *base, "--model", str(checkpoint_dir), "--tokenizers", str(tmp_path / "nope")),
                   "--tokenizers", "nope", "not a directory")
    corrupt = tmp_path / "broken.jpg"
    corrupt.write_bytes(photo_file.read_bytes()[:200])
    one_error_line(run(fourm, *base, "--model", str(checkpoint_dir), "--in", f"rgb={corrupt}"), "broken.jpg",
                   "cannot read the image")
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"not an image at all")
    one_error_line(run(fourm, *base, "--model", str(checkpoint_dir), "--in", f"rgb={garbage}"), "garbage.png")


def test_broken_checkpoints(fourm, checkpoint_dir, tmp_path):
    save = str(tmp_path / "out")
    base = ["generate", "--out", "depth", "--save", save, "--model"]
    truncated = tmp_path / "truncated"
    shutil.copytree(checkpoint_dir, truncated)
    weights = truncated / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    one_error_line(run(fourm, *base, str(truncated)), "safetensors", "re-download")
    no_weights = tmp_path / "no_weights"
    shutil.copytree(checkpoint_dir, no_weights)
    (no_weights / "model.safetensors").unlink()
    one_error_line(run(fourm, *base, str(no_weights)), "no_weights")
    bad_config = tmp_path / "bad_config"
    shutil.copytree(checkpoint_dir, bad_config)
    cfg = json.loads((bad_config / "config.json").read_text())
    cfg["model"]["num_heads"] = 0
    (bad_config / "config.json").write_text(json.dumps(cfg))
    one_error_line(run(fourm, *base, str(bad_config)), "num_heads")
    torn = tmp_path / "torn"
    shutil.copytree(checkpoint_dir, torn)
    (torn / "config.json").write_text('{"model": ')
    one_error_line(run(fourm, *base, str(torn)), "config.json")


def test_unparseable_output_still_gets_a_png_and_one_warning(fourm, checkpoint_dir, photo_file, tmp_path,
                                                             monkeypatch):
    """A sequence the model got wrong is saved as text, drawn into its PNG, warned about once."""
    from fourm_caption.components import CaptionSerializer

    def refuse(self, text):
        raise ValueError("no closing sentinel")

    monkeypatch.setattr(CaptionSerializer, "from_text", refuse)
    save = tmp_path / "out"
    res = CliRunner().invoke(fourm, ["generate", "--model", str(checkpoint_dir), "--in", f"rgb={photo_file}",
                                     "--out", "caption", "--save", str(save), "--steps", "2"])
    assert res.exit_code == 0, res.output
    assert (save / "caption.txt").read_text().startswith("unparseable:")
    assert Image.open(save / "caption.png").size[0] > 0 and (save / "grid.png").is_file()
    assert res.output.count("could not be parsed") == 1 and "visualizer" not in res.output, res.output


# ------------------------------------------------------------------------------------ the mapping itself
def test_library_errors_map_to_one_line_and_bugs_keep_their_traceback(monkeypatch):
    from fourm_core.compat.ml4m.config import ML4MImportError
    from fourm_core.errors import CheckpointError
    from fourm_core.model.config import ConfigError
    from fourm_core.plugin_kit.seqtext import SerializationError

    for exc in (CheckpointError("ckpt x: bad"), ML4MImportError("ml4m: bad key"), ConfigError("model config: dim"),
                SerializationError("det: bad boxes")):
        assert fcli.error_line(exc) == str(exc)
    import yaml

    with pytest.raises(yaml.YAMLError) as info:
        yaml.safe_load("a: [1")
    assert fcli.error_line(info.value).startswith("invalid YAML: ")
    assert fcli.error_line(RuntimeError("a bug")) is None
    assert fcli.error_line(KeyError("x")) is None

    import click

    @click.command()
    def bug():
        raise RuntimeError("a bug")

    @click.command()
    def mistake():
        raise CheckpointError("ckpt: missing")

    with pytest.raises(RuntimeError):
        fcli.run_command(bug, [])
    assert fcli.run_command(mistake, []) == 2
    monkeypatch.setenv(fcli.DEBUG_ENV, "1")
    with pytest.raises(CheckpointError):  # FOURM_DEBUG=1: the traceback of every error
        fcli.run_command(mistake, [])


def test_a_plugin_hook_raising_names_the_plugin(tmp_path):
    """A plugin whose hook raises something other than a FourmError: the line names the plugin and how to skip it."""
    plugin = tmp_path / "fourm_broken_demo.py"
    plugin.write_text("from fourm_registry import hookimpl\n\n\n@hookimpl\ndef fourm_register_modalities(register):\n"
                      "    raise RuntimeError('config file missing')\n")
    from fourm_registry.manager import PluginManager

    sys.path.insert(0, str(tmp_path))
    try:
        import fourm_broken_demo

        pm = PluginManager(entry_points=[], modules=[("broken_demo", fourm_broken_demo)])
        with pytest.raises(RuntimeError) as info:
            pm.modalities()
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("fourm_broken_demo", None)
    line = fcli.error_line(info.value)
    assert line is not None and "fourm_broken_demo" in line and "fourm_register_modalities" in line
    assert "RuntimeError: config file missing" in line


def test_accelerate_cpu_num_processes_is_detected():
    one_process_of_two = {"ACCELERATE_USE_CPU": "True", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}
    with pytest.raises(FourmError, match="starts ONE process.*torchrun --nproc_per_node"):
        fcli.check_launcher(one_process_of_two)
    fcli.check_launcher({"ACCELERATE_USE_CPU": "True"})  # --cpu, one process: fine
    fcli.check_launcher({**one_process_of_two, "WORLD_SIZE": "2", "RANK": "0"})  # a real multi-process launch
