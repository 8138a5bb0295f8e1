"""The pytest plugin of fourm's test kit (entry point ``fourm_core.testing.plugin`` in group ``pytest11``).

pytest loads it at start-up wherever ``fourm-core`` is installed. It registers the kit's modules for assertion
rewriting (so a failing contract check shows the compared values) and provides the ``fourm_photos`` fixture.
Without the installed entry point, load it with ``pytest -p fourm_core.testing.plugin``; the entry point is named
after the module, so that both together register it once (``-p no:fourm_core.testing.plugin`` disables it).
Importing it is cheap (no torch, no numpy).
"""

from __future__ import annotations

from typing import Any

import pytest

from . import KIT_MODULES

pytest.register_assert_rewrite(*KIT_MODULES)


@pytest.fixture(scope="session")
def fourm_photos() -> list[Any]:
    """Three real photos (scikit-image's samples) as uint8 ``(256, 256, 3)`` arrays, the store's raw size."""
    from .samples import sample_photos

    return sample_photos(3)
