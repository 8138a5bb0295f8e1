"""``fourm plugins`` / ``fourm modalities``: aligned tables for people, ``--json`` unchanged for programs."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from fourm_registry import ModalitySet, ModalitySpec
from fourm_registry import cli as cli_mod

PLUGINS = [
    SimpleNamespace(name="rgb", module="fourm_rgb", distribution="fourm-rgb", version="0.1.0",
                    hooks=("fourm_register_modalities",)),
    SimpleNamespace(name="color_palette", module="fourm_color_palette", distribution="fourm-color-palette",
                    version="12.0.0rc1", hooks=("fourm_register_modalities", "fourm_register_commands")),
]


@pytest.fixture
def manager(monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    mods = ModalitySet([
        ModalitySpec(name="rgb", kind="pixels", grid=(14, 14), patch_size=16, channels=3, decoder=False),
        ModalitySpec(name="tok_semseg_long_name", kind="image", grid=(14, 14), vocab_size=4096),
    ])
    fake = SimpleNamespace(plugins=lambda: PLUGINS, modalities=lambda: mods)
    monkeypatch.setattr(cli_mod, "get_manager", lambda: fake)
    return fake


def _columns(line: str, header: str) -> list[int]:
    """Start offsets of the header's columns that ``line`` has text at."""
    starts = [i for i, c in enumerate(header) if c != " " and (i == 0 or header[i - 1] == " ")]
    return [i for i in starts if i < len(line) and line[i] != " " and (i == 0 or line[i - 1] == " ")]


def test_plugins_table_is_aligned(manager: SimpleNamespace) -> None:
    out = CliRunner().invoke(cli_mod.cli, ["plugins"]).output.splitlines()
    header, rows = out[0], out[1:]
    assert header.split() == ["PLUGIN", "DISTRIBUTION", "VERSION", "HOOKS"]
    assert len(rows) == 2
    starts = [i for i, c in enumerate(header) if c != " " and header[i - 1] == " "]
    for row in rows:
        assert _columns(row, header) == [0, *starts]  # every cell starts under its heading
        assert row == row.rstrip()
    assert rows[1].endswith("fourm_register_modalities, fourm_register_commands")


def test_plugins_json_unchanged(manager: SimpleNamespace) -> None:
    data = json.loads(CliRunner().invoke(cli_mod.cli, ["plugins", "--json"]).output)
    assert data == [{"name": p.name, "module": p.module, "distribution": p.distribution, "version": p.version,
                     "hooks": list(p.hooks)} for p in PLUGINS]


def test_modalities_table_and_json(manager: SimpleNamespace) -> None:
    out = CliRunner().invoke(cli_mod.cli, ["modalities"]).output.splitlines()
    header = out[0]
    assert header.split() == ["MODALITY", "KIND", "TOKENS", "VOCAB", "PLUGIN", "VERSION", "COMPONENTS"]
    pixels, tokens = out[1], out[2]
    assert tokens.split()[:4] == ["tok_semseg_long_name", "image", "196", "4096"]
    assert pixels.split()[:4] == ["rgb", "pixels", "196", "-"]  # no vocabulary: a dash, not "None"
    assert header.index("KIND") == tokens.index("image") == pixels.index("pixels")
    data = json.loads(CliRunner().invoke(cli_mod.cli, ["modalities", "--json"]).output)
    assert [d["name"] for d in data] == ["rgb", "tok_semseg_long_name"]


def test_empty_listings_say_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = SimpleNamespace(plugins=lambda: [], modalities=lambda: ModalitySet([]))
    monkeypatch.setattr(cli_mod, "get_manager", lambda: fake)
    assert "pip install" in CliRunner().invoke(cli_mod.cli, ["plugins"]).output
    assert "pip install" in CliRunner().invoke(cli_mod.cli, ["modalities"]).output


def test_format_table() -> None:
    assert cli_mod.format_table(["A", "LONG"], [("xyz", 1), ("q", "")]) == "A    LONG\nxyz  1\nq"
