"""Training resume under faults: ``latest`` is written only after every process saved, atomically, and a torn
one is an error naming the file (never a load of the ``checkpoints/`` folder itself); a torn ``metrics.jsonl``
line never stops ``--resume``; ``save_pretrained`` of models and tokenizers never leaves a torn file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from fourm_trainers.config import TrainConfigError
from fourm_trainers.train import checkpointing, metrics


class FakeAccelerator:
    """The part of ``accelerate.Accelerator`` the checkpoint functions use, recording what happened when."""

    def __init__(self, root: Path, is_main: bool = True):
        self.root, self.is_main_process, self.events = root, is_main, []

    def _latest(self) -> str | None:
        p = self.root / checkpointing.LATEST
        return p.read_text() if p.exists() else None

    def save_state(self, path: str) -> None:
        Path(path).mkdir(parents=True)
        (Path(path) / "state.bin").write_bytes(b"x")
        self.events.append(("save_state", Path(path).name, self._latest()))

    def wait_for_everyone(self) -> None:
        self.events.append(("wait", None, self._latest()))

    def load_state(self, path: str) -> None:
        self.events.append(("load_state", path, None))


def test_latest_is_written_after_every_process_saved(tmp_path):
    """Catches rank 0 pointing ``latest`` at ``step_N`` while other ranks are still writing their part of it: at
    the first barrier after ``save_state`` (where the other ranks may still be saving), ``latest`` must still
    name the previous checkpoint."""
    root = tmp_path / "checkpoints"
    acc = FakeAccelerator(root)
    checkpointing.save_checkpoint(acc, root, 2)
    checkpointing.save_checkpoint(acc, root, 4)
    waits_after_save = [acc.events[i + 1] for i, e in enumerate(acc.events) if e[0] == "save_state"]
    assert [w[0] for w in waits_after_save] == ["wait", "wait"]
    assert [w[2] for w in waits_after_save] == [None, "step_2"], acc.events
    assert (root / "latest").read_text() == "step_4"
    assert not [p for p in root.iterdir() if p.name.startswith(".")]  # no temporary left behind


@pytest.mark.parametrize("content", ["", "step_", "step_7", "../../etc", "\x00\x00"])
def test_torn_or_dangling_latest_is_a_clear_error(tmp_path, content):
    """Catches a resume that loads whatever a torn ``latest`` yields: an empty one made it load ``checkpoints/``."""
    root = tmp_path / "checkpoints"
    acc = FakeAccelerator(root)
    checkpointing.save_checkpoint(acc, root, 3)
    (root / "latest").write_text(content)
    with pytest.raises(TrainConfigError, match=r"latest should name a checkpoint folder \(step_N\).*step_3.*--resume"):
        checkpointing.load_latest(acc, root)
    assert not [e for e in acc.events if e[0] == "load_state"]
    (root / "latest").write_text("step_3\n")
    checkpointing.load_latest(acc, root)
    assert acc.events[-1] == ("load_state", str(root / "step_3"), None)


def test_latest_is_replaced_only_once_its_content_is_durable(tmp_path, monkeypatch):
    """A crash between writing ``latest``'s bytes and making them durable (simulated: fsync fails) leaves the
    previous ``latest``, not a truncated one."""
    root = tmp_path / "checkpoints"
    acc = FakeAccelerator(root)
    checkpointing.save_checkpoint(acc, root, 1)

    def crash(fd):
        raise OSError("simulated crash before the data reached the disk")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError, match="simulated crash"):
        checkpointing.save_checkpoint(acc, root, 2)
    monkeypatch.undo()
    assert (root / "latest").read_text() == "step_1"
    assert checkpointing.latest_dir(root) == root / "step_1"


def test_torn_last_metrics_line_does_not_stop_resume(tmp_path, caplog):
    """Catches ``metrics.truncate`` (called by every ``--resume``) dying on a line a kill cut short."""
    path = tmp_path / "metrics.jsonl"
    for step in (1, 2, 3):
        metrics.append(path, {"step": step, "loss": float(step)})
    with open(path, "a") as fh:
        fh.write('{"step": 4, "loss": 0.2')  # killed mid-line
    metrics.truncate(path, 3)
    assert [json.loads(x) for x in path.read_text().splitlines()] == [{"step": s, "loss": float(s)} for s in (1, 2, 3)]
    assert "not JSON objects" in caplog.text
    # a torn line in the middle (an older crash) and a non-object line are dropped the same way
    path.write_text('{"step": 1}\n{"step": 2, "lo\n[1, 2]\n{"step": 3}\n')
    metrics.truncate(path, 5)
    assert [json.loads(x) for x in path.read_text().splitlines()] == [{"step": 1}, {"step": 3}]
    assert metrics.read(path) == [{"step": 1}, {"step": 3}]


def test_tokenizer_save_never_leaves_a_torn_config(tmp_path):
    """Catches a config.json written in place: a save that fails half-way (here: a value that cannot be
    serialised, which json.dump meets after writing the keys before it) left a truncated config.json that no
    load can read; now the previous save stays intact."""
    from fourm_core.tokenizers import MLPVQ, load_tokenizer

    torch.manual_seed(0)
    tok = MLPVQ(modality="feat", in_dim=8, num_tokens=2, hidden_dim=16, codebook_size=16, code_dim=4)
    out = tmp_path / "tok"
    tok.save_pretrained(out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with torch.no_grad():
        next(tok.parameters()).add_(1.0)
    tok.config["zzz_unserialisable"] = object()
    with pytest.raises(TypeError):
        tok.save_pretrained(out)
    assert (out / "config.json").read_bytes() == before["config.json"]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
    load_tokenizer(out)  # still loadable


def test_model_save_pretrained_replaces_files_atomically(tmp_path, monkeypatch):
    """A crash before ``config.json`` / ``model.safetensors`` are durable (simulated: fsync fails) leaves the
    previous checkpoint loadable."""
    from fourm_core.checkpoint import CONFIG_NAME, save_pretrained

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(3))

        def num_parameters(self):
            return 3

    import fourm_core.checkpoint as ckpt

    monkeypatch.setattr(ckpt, "checkpoint_config", lambda model: {"format": "test", "w0": float(model.w.detach()[0])})
    m = Tiny()
    save_pretrained(m, tmp_path / "m")
    before = (tmp_path / "m" / CONFIG_NAME).read_text()

    def crash(fd):
        raise OSError("simulated crash")

    with torch.no_grad():
        m.w.add_(1.0)
    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError, match="simulated crash"):
        save_pretrained(m, tmp_path / "m")
    monkeypatch.undo()
    assert (tmp_path / "m" / CONFIG_NAME).read_text() == before
    from safetensors.torch import load_file

    assert torch.equal(load_file(str(tmp_path / "m" / "model.safetensors"))["w"], torch.ones(3))
