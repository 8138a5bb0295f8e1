"""Test-wide settings: offline hub (an accidental download fails at once), one thread per process (the
machine is small and tests run beside other work), deterministic hypothesis profile, and the one switch that
turns machine-dependent skips into failures (``FOURM_STRICT_SKIPS=1``, set by ``.ci/run``).

Machine-dependent tests declare what they need with the ``requires`` marker, never with ``skipif``::

    needs_onednn = pytest.mark.requires("onednn", available=onednn_linear_available(),
                                        reason="no oneDNN linear kernel on this build")

Every name is declared once in :data:`REQUIREMENTS`, with whether CI provides it. Without the switch a test
whose requirement is missing skips (the reason shows in ``-ra``). Under ``FOURM_STRICT_SKIPS=1`` it *fails*
when CI provides that requirement (a kernel this torch build should have, the conformance set beside the
checkout), and still skips when it needs hardware CI does not have (CUDA). Under the switch any other
``skipif`` that fires, and any test module skipped at import (``pytest.importorskip``), fails too: a skip CI
does not know about cannot hide there. Skips a test body decides (``pytest.skip`` with a reason, e.g. a
modality that declares no such component) are not about the machine and stay skips."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _settings(config):
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # the registry tests run without torch
        pass
    try:
        from hypothesis import HealthCheck, settings

        settings.register_profile("fourm", deadline=None, max_examples=60, derandomize=True,
                                  suppress_health_check=[HealthCheck.too_slow])
        settings.load_profile("fourm")
    except ImportError:
        pass


import pytest  # noqa: E402

_PLUGIN_ENV = ("FOURM_PLUGINS", "FOURM_DISABLE_PLUGINS")


@pytest.fixture(autouse=True)
def _plugin_env_is_restored():
    """A test that changes which plugins load must not leak that into the tests after it."""
    before = {k: os.environ.get(k) for k in _PLUGIN_ENV}
    yield
    after = {k: os.environ.get(k) for k in _PLUGIN_ENV}
    if after != before:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        from fourm_registry import reset_manager

        reset_manager()


# ---------------------------------------------------------------------------------- machine-dependent skips

#: every requirement a test may declare with ``pytest.mark.requires(name, available=..., reason=...)``:
#: ``None`` when the CI machine provides it (under ``FOURM_STRICT_SKIPS=1`` a missing one fails the test), or
#: the reason CI cannot provide it (the test skips everywhere the requirement is missing, CI included)
REQUIREMENTS: dict[str, str | None] = {
    "int8_kernel": None,  # torch's x86 (fbgemm) quantized linear: every x86 build of stock torch has it
    "onednn": None,  # torch's oneDNN (mkldnn) linear on CPU: every x86 build of stock torch has it
    "conformance": None,  # ../shared/conformance beside the checkout (the reference's parity vectors)
    "chromium": None,  # Debian's chromium + chromium-driver and selenium: the `fourm demo` browser test
    "cuda": "the CI machine has no GPU",
}

#: the switch. It replaces FOURM_REQUIRE_CONFORMANCE=1 (the conformance set only), which it sets for the tests
#: that still read that name
STRICT_ENV = "FOURM_STRICT_SKIPS"


def strict_skips() -> bool:
    """Whether machine-dependent skips fail (``FOURM_STRICT_SKIPS=1``)."""
    return os.environ.get(STRICT_ENV) == "1"


def pytest_configure(config):
    _settings(config)
    if strict_skips():
        os.environ["FOURM_REQUIRE_CONFORMANCE"] = "1"
    config.addinivalue_line(
        "markers", "requires(name, *, available, reason): the test needs a machine resource declared in the root "
        "conftest's REQUIREMENTS; it skips where the resource is missing, and fails under FOURM_STRICT_SKIPS=1 "
        "when CI provides it")


_SKIPPED_BY_REQUIRES = pytest.StashKey[bool]()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    for mark in item.iter_markers("requires"):
        name = mark.args[0] if mark.args else None
        if name not in REQUIREMENTS or set(mark.kwargs) != {"available", "reason"} or len(mark.args) != 1:
            pytest.fail(f"pytest.mark.requires{mark.args}{mark.kwargs}: use requires(NAME, available=BOOL, reason=STR) "
                        f"with NAME one of {', '.join(REQUIREMENTS)} (declare new ones in the root conftest.py)",
                        pytrace=False)
        if mark.kwargs["available"]:
            continue
        ci_lacks = REQUIREMENTS[name]
        if strict_skips() and ci_lacks is None:
            pytest.fail(f"{STRICT_ENV}=1: requirement {name!r} is missing on this machine ({mark.kwargs['reason']}); "
                        f"CI must provide it", pytrace=False)
        item.stash[_SKIPPED_BY_REQUIRES] = True
        pytest.skip(f"requires {name}: {mark.kwargs['reason']}" + (f" ({ci_lacks})" if ci_lacks else ""))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "setup" and rep.skipped and item.stash.get(_SKIPPED_BY_REQUIRES, False):
        # report the skip at the test (as pytest does for its skip marks), not at this file
        path, line, _ = item.reportinfo()
        rep.longrepr = (str(path), (line or 0) + 1, rep.longrepr[2])
    elif (rep.when == "setup" and rep.skipped and strict_skips() and any(True for _ in item.iter_markers("skipif"))
            and not any(True for _ in item.iter_markers("requires"))):
        reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
        rep.outcome = "failed"
        rep.longrepr = (f"{STRICT_ENV}=1: skipped by a skipif marker ({reason}); a machine-dependent test declares "
                        f"its need with pytest.mark.requires(...) (see the root conftest.py)")


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    rep = outcome.get_result()
    if rep.skipped and strict_skips():
        reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
        rep.outcome = "failed"
        rep.longrepr = f"{STRICT_ENV}=1: {collector.nodeid} skipped at import ({reason})"
