"""The machine-dependent skip switch of the root conftest (``FOURM_STRICT_SKIPS=1``, set by ``.ci/run``).

A real pytest run in a subprocess, over a scratch directory holding a copy of the repository's root
``conftest.py`` and one test per kind of skip; the outcome of every test is read from its JUnit XML report.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CASES = textwrap.dedent('''
    import os

    import pytest

    def test_the_older_switch_name_follows_the_switch():
        assert os.environ.get("FOURM_REQUIRE_CONFORMANCE") == os.environ.get("FOURM_STRICT_SKIPS")

    @pytest.mark.requires("onednn", available=True, reason="no oneDNN here")
    def test_present_requirement_runs():
        pass

    @pytest.mark.requires("onednn", available=False, reason="no oneDNN here")
    def test_missing_requirement_ci_has():
        pass

    @pytest.mark.requires("conformance", available=False, reason="no shared/ here")
    def test_missing_conformance_set():
        pass

    @pytest.mark.requires("cuda", available=False, reason="needs a CUDA device")
    def test_missing_hardware_ci_lacks():
        pass

    @pytest.mark.requires("onednn", available=False, reason="no oneDNN here")
    @pytest.mark.requires("cuda", available=True, reason="needs a CUDA device")
    def test_one_missing_requirement_of_two():
        pass

    @pytest.mark.requires("int8_kernal", available=True, reason="typo")
    def test_undeclared_requirement():
        pass

    @pytest.mark.skipif(True, reason="some machine thing")
    def test_plain_skipif():
        pass

    def test_skip_decided_by_the_test():
        pytest.skip("this modality declares no serializer")
''')

IMPORT_SKIP = "import pytest\npytest.importorskip('a_module_nobody_has')\n\ndef test_never_runs():\n    pass\n"


def _outcomes(tmp_path: Path, **env: str) -> dict[str, str]:
    """Run the cases with the root conftest under ``env``; return {test or module name: passed|skipped|failed},
    the exit status ("exit") and the output ("stdout")."""
    work = tmp_path / "_".join(f"{k}{v}" for k, v in env.items()) if env else tmp_path / "plain"
    work.mkdir()
    (work / "conftest.py").write_text((ROOT / "conftest.py").read_text())
    (work / "test_cases.py").write_text(CASES)
    (work / "test_import_skip.py").write_text(IMPORT_SKIP)
    # the switch is on in CI's own run (and sets the older name): each case run starts without either
    run_env = {k: v for k, v in os.environ.items()
               if k not in ("FOURM_STRICT_SKIPS", "FOURM_REQUIRE_CONFORMANCE", "PYTEST_ADDOPTS")}
    run_env.update(env)
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "--strict-markers",
                          "--continue-on-collection-errors", "--junitxml", str(work / "report.xml"), str(work)],
                         capture_output=True, text=True, cwd=work, env=run_env, timeout=300)
    assert (work / "report.xml").exists(), res.stdout + res.stderr
    out: dict[str, str] = {}
    for case in ET.parse(work / "report.xml").getroot().iter("testcase"):
        kinds = {child.tag for child in case} & {"failure", "error", "skipped"}
        # a module skipped (or failed) at import is one case named after the module
        out[case.get("name", "")] = "failed" if kinds & {"failure", "error"} else "skipped" if kinds else "passed"
    out["exit"] = str(res.returncode)
    out["stdout"] = res.stdout
    return out


def _skip_messages(work: Path) -> str:
    """The skip reasons the JUnit report of the run in ``work`` recorded."""
    return "\n".join(s.get("message", "") for s in ET.parse(work / "report.xml").getroot().iter("skipped"))


def _by_test(o: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in o.items() if k.startswith("test_")}


EXPECTED_PLAIN = {
    "test_the_older_switch_name_follows_the_switch": "passed",
    "test_present_requirement_runs": "passed", "test_missing_requirement_ci_has": "skipped",
    "test_missing_conformance_set": "skipped", "test_missing_hardware_ci_lacks": "skipped",
    "test_one_missing_requirement_of_two": "skipped", "test_undeclared_requirement": "failed",
    "test_plain_skipif": "skipped", "test_skip_decided_by_the_test": "skipped", "test_import_skip": "skipped",
}


def test_without_the_switch_machine_dependent_tests_skip(tmp_path):
    """Without the switch a missing requirement is a skip (and an undeclared requirement name always fails)."""
    o = _outcomes(tmp_path)
    assert _by_test(o) == EXPECTED_PLAIN, o["stdout"]
    assert o["exit"] == "1", o["stdout"]  # the undeclared name
    assert "requires onednn: no oneDNN here" in _skip_messages(tmp_path / "plain")
    # reported at the test, as pytest's own skip marks are, not at the conftest
    assert re.search(r"SKIPPED \[1\] test_cases.py:\d+: requires onednn: no oneDNN here", o["stdout"]), o["stdout"]


def test_under_the_switch_skips_ci_should_not_have_fail(tmp_path):
    """Under ``FOURM_STRICT_SKIPS=1`` a missing requirement that CI provides, a firing ``skipif`` and a module
    skipped at import fail; hardware CI lacks (CUDA) and a skip the test body decides stay skips. Catches a
    switch that is ignored, or that fails every skip."""
    o = _outcomes(tmp_path, FOURM_STRICT_SKIPS="1")
    assert _by_test(o) == {
        **EXPECTED_PLAIN, "test_missing_requirement_ci_has": "failed", "test_missing_conformance_set": "failed",
        "test_one_missing_requirement_of_two": "failed", "test_plain_skipif": "failed", "test_import_skip": "failed",
    }, o["stdout"]
    assert o["exit"] != "0"
    # a test module skipped at import is a collection error: without --continue-on-collection-errors (as in
    # .ci/run) the whole run stops there, loudly
    assert "FOURM_STRICT_SKIPS=1: requirement 'onednn' is missing on this machine (no oneDNN here)" in o["stdout"]
