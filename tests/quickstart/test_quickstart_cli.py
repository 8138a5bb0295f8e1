"""The ``quickstart`` command of the fourm-quickstart distribution: cheap to import, one click command for
both ``fourm quickstart`` and ``python -m fourm_quickstart``."""

from __future__ import annotations

import subprocess
import sys

import click
from click.testing import CliRunner


def test_command_module_imports_neither_torch_nor_numpy():
    code = ("import sys, fourm_quickstart.cli, fourm_quickstart.plugin; "
            "heavy = {'torch', 'numpy', 'fourm_core', 'fourm_trainers'} & set(sys.modules); "
            "assert not heavy, sorted(heavy)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr


def test_register_commands_adds_quickstart_with_its_options():
    from fourm_quickstart.cli import register_commands

    group = click.Group("fourm")
    register_commands(group)
    assert list(group.commands) == ["quickstart"]
    res = CliRunner().invoke(group, ["quickstart", "--help"])
    assert res.exit_code == 0, res.output
    for opt in ("--out", "--minutes", "--seed", "--no-model-labelers"):
        assert opt in res.output
    params = {p.name for p in group.commands["quickstart"].params}
    assert params == {"out", "minutes", "seed", "samples", "eval_crops", "steps", "tokenizer_steps",
                      "train_steps", "rgb_targets", "show_all", "no_model_labelers"}


def test_python_m_runs_the_same_command():
    res = subprocess.run([sys.executable, "-m", "fourm_quickstart", "--minutes", "0"], capture_output=True,
                         text=True, timeout=120)
    assert res.returncode != 0 and "--minutes must be > 0" in res.stderr, res.stderr


def test_package_exports_the_run_api_lazily():
    import fourm_quickstart
    from fourm_quickstart.config import QuickstartConfig, QuickstartError
    from fourm_quickstart.run import run_quickstart

    assert fourm_quickstart.QuickstartConfig is QuickstartConfig
    assert fourm_quickstart.QuickstartError is QuickstartError
    assert fourm_quickstart.run_quickstart is run_quickstart
