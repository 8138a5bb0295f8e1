"""``fourm demo`` as a user starts it: a fresh process that loads the model, prints its address and serves
until stopped; bad options are one ``error:`` line."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import click
from click.testing import CliRunner

from fourm_registry.cli import FourmGroup


def _env() -> dict[str, str]:
    import fourm_demo

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    here = str(Path(fourm_demo.__file__).resolve().parents[1])  # works installed or from the checkout
    env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH", "")) if p)
    return env


def _group() -> click.Group:
    """A ``fourm`` group whose commands come from the plugin manager, with the demo as its only plugin (the
    manager validates its hooks as it does an installed distribution's)."""
    from fourm_demo import plugin

    from fourm_registry.manager import PluginManager

    @click.group(cls=FourmGroup)
    def group():
        """test group"""

    PluginManager(entry_points=[], env={}, modules=[("demo", plugin)]).register_commands(group)
    return group


def test_the_command_serves_the_model(demo_model):
    proc = subprocess.Popen([sys.executable, "-m", "fourm_demo", "--model", str(demo_model), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env())
    try:
        line = ""
        deadline = time.monotonic() + 120
        while "http://" not in line and time.monotonic() < deadline and proc.poll() is None:
            line = proc.stdout.readline()
        assert "http://127.0.0.1:" in line, line + (proc.stdout.read() if proc.poll() is not None else "")
        assert "targets: caption, color_palette, depth, tok_rgb" in line
        url = line[line.index("http://"):].split()[0]
        with urllib.request.urlopen(url + "api/info", timeout=30) as r:
            assert json.loads(r.read())["model"] == str(demo_model)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_bad_options_are_one_line(demo_model, tmp_path):
    group = _group()
    assert "demo" in group.commands
    res = CliRunner().invoke(group, ["demo", "--model", str(tmp_path / "missing")])
    assert res.exit_code == 2 and "does not exist" in res.output
    res = CliRunner().invoke(group, ["demo", "--model", str(demo_model), "--tokenizers", str(tmp_path / "no")])
    assert res.exit_code == 2 and "is not a directory" in res.output
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        res = CliRunner().invoke(group, ["demo", "--model", str(demo_model), "--port", str(port)])
    assert res.exit_code == 2, res.output
    assert f"--port {port}: cannot listen there" in res.output and "--port 0" in res.output
    assert "Traceback" not in res.output
