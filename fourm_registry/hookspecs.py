"""The hooks a fourm plugin may implement.

A plugin is a module named by an entry point of the ``fourm`` group::

    [project.entry-points.fourm]
    depth = "fourm_depth.plugin"

that defines functions decorated with :data:`fourm_registry.hookimpl`. Hooks use the *callback* style:
the host hands the plugin a function to call, so every registration is attributed to its plugin and
duplicates are reported with both plugins' names. Plugins must not rely on the order hooks are called in.
Every argument is keyword-only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import pluggy

if TYPE_CHECKING:
    import click

    from .specs import ModalitySpec

PROJECT = "fourm"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def fourm_register_modalities(register: Callable[[ModalitySpec], None]) -> None:
    """Register the modalities this plugin provides.

    Called once, the first time the registry builds its :class:`~fourm_registry.ModalitySet`
    (``fourm modalities``, ``build_model``, the data jobs, ...).

    :param register: call ``register(spec)`` once per :class:`~fourm_registry.ModalitySpec`. The registry
        fills in ``plugin`` and ``version`` from the plugin's distribution. A name, alias or id that another
        plugin already registered raises :class:`~fourm_registry.errors.DuplicateModalityError`.
    :return: nothing; return values are ignored.
    """


@hookspec
def fourm_register_commands(cli: click.Group) -> None:
    """Add sub-commands to the ``fourm`` command line.

    Called once, when ``fourm`` starts. Use ``@cli.command()`` to add commands. Keep the module that
    defines them free of heavy imports (torch, transformers): import those inside the command body, so
    that ``fourm --help`` stays fast.

    :param cli: the ``fourm`` :class:`click.Group`.
    :return: nothing; return values are ignored.
    """
