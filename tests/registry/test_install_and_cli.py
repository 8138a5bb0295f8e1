"""A third-party plugin really pip-installed into a fresh virtualenv; the CLI; hook documentation."""

from __future__ import annotations

import inspect
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fourm_registry import hookspecs

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "fourm-hello"


def _run(cmd, **kw):
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "HF_HUB_OFFLINE": "1"}
    env.pop("FOURM_PLUGINS", None)
    env.pop("FOURM_DISABLE_PLUGINS", None)
    return subprocess.run(cmd, capture_output=True, text=True, env=env, **kw)


def _modalities(py) -> list[dict]:
    out = _run([str(py), "-m", "fourm_registry.cli", "modalities", "--json"])
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_pip_installed_plugin_appears_and_disappears(fresh_venv):
    py = fresh_venv
    assert "hello_hist" not in [m["name"] for m in _modalities(py)]
    inst = _run([str(py), "-m", "pip", "install", "--no-deps", "-q", str(FIXTURE)])
    assert inst.returncode == 0, inst.stderr
    mods = {m["name"]: m for m in _modalities(py)}
    assert "hello_hist" in mods
    m = mods["hello_hist"]
    assert (m["kind"], m["plugin"], m["version"], m["num_tokens"], m["vocab_size"]) == ("vector", "fourm-hello", "0.3.1", 4, 256)
    assert m["labeler"] is True and m["tokenizer"] is False and m["visualizer"] is False
    plugins = json.loads(_run([str(py), "-m", "fourm_registry.cli", "plugins", "--json"], check=True).stdout)
    hello = [p for p in plugins if p["name"] == "hello"]
    assert hello and hello[0]["distribution"] == "fourm-hello" and hello[0]["hooks"] == ["fourm_register_modalities"]
    # FOURM_DISABLE_PLUGINS hides it without uninstalling
    env = {**os.environ, "FOURM_DISABLE_PLUGINS": "hello"}
    out = subprocess.run([str(py), "-m", "fourm_registry.cli", "modalities", "--json"], capture_output=True, text=True, env=env)
    assert "hello_hist" not in [x["name"] for x in json.loads(out.stdout)]
    un = _run([str(py), "-m", "pip", "uninstall", "-y", "-q", "fourm-hello"])
    assert un.returncode == 0, un.stderr
    assert "hello_hist" not in [m["name"] for m in _modalities(py)]


def test_listing_commands_do_not_import_torch():
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from fourm_registry.cli import cli\n"
        "from fourm_registry import get_manager\n"
        "get_manager().register_commands(cli)\n"
        "for args in (['--help'], ['plugins', '--json'], ['modalities', '--json']):\n"
        "    r = CliRunner().invoke(cli, args)\n"
        "    assert r.exit_code == 0, (args, r.output)\n"
        "print(sorted(m for m in ('torch', 'numpy', 'zarr', 'transformers') if m in sys.modules))\n"
    )
    out = _run([sys.executable, "-c", code])
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_cli_reports_fourm_errors_in_one_line(tmp_path):
    bad = tmp_path / "plug_broken_cli.py"
    bad.write_text("raise ImportError('missing thing')\n")
    code = (
        "import importlib.metadata as md, sys\n"
        f"sys.path.insert(0, {str(tmp_path)!r})\n"
        "import fourm_registry.manager as m\n"
        "m._manager = m.PluginManager(entry_points=[md.EntryPoint('broken_cli', 'plug_broken_cli', 'fourm')])\n"
        "from fourm_registry.cli import main\n"
        "main(['modalities'])\n"
    )
    out = _run([sys.executable, "-c", code])
    assert out.returncode == 2
    assert out.stderr.startswith("error: fourm plugin 'broken_cli'") and "Traceback" not in out.stderr


def test_every_hook_is_documented():
    hooks = [name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("fourm_")]
    assert hooks, "no hooks found"
    docs = (ROOT / "docs" / "plugin-hooks.md").read_text()
    for name in hooks:
        fn = getattr(hookspecs, name)
        doc = inspect.getdoc(fn) or ""
        assert len(doc) > 80, f"hook {name} needs a real docstring"
        params = [p for p in inspect.signature(fn).parameters]
        for p in params:
            assert f":param {p}:" in doc, f"hook {name}: parameter {p!r} undocumented"
        assert re.search(rf"^## {name}$", docs, re.M), f"hook {name} has no section in docs/plugin-hooks.md"
