"""fourm demo: a local web page that runs a fourm or released 4M model on a photo.

``fourm demo --model DIR_OR_HUB_ID`` loads :class:`fourm_core.pipeline.AnyToAny` once and serves, with the
standard library's HTTP server, one page: drop an image, pick the model's decodable targets and the generation
settings (steps, temperature, seed, grammar), and see each output drawn by its plugin's visualizer beside the
raw JSON. :class:`DemoApp` is the back end without HTTP, :class:`DemoServer` the server.
"""

from __future__ import annotations

from typing import Any

__all__ = ["DemoApp", "DemoError", "DemoServer"]


def __getattr__(name: str) -> Any:  # lazy: registering the command imports neither numpy nor the server
    if name in ("DemoApp", "DemoError"):
        from . import app

        return getattr(app, name)
    if name == "DemoServer":
        from .server import DemoServer

        return DemoServer
    raise AttributeError(f"module 'fourm_demo' has no attribute {name!r}")
