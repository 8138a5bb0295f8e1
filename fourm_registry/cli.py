"""The ``fourm`` command line. Plugins add commands through ``fourm_register_commands``.

This module and the listing commands never import torch: ``fourm --help`` stays fast.

Errors: every error a user can fix prints as one line, ``error: WHAT; FIX``, and exits with status 2. That is
fourm's own :class:`~fourm_registry.errors.FourmError`, a few errors of fourm_core that are plain
``ValueError`` subclasses (checkpoint, model config, serialization), and the errors of the libraries that
read user files (YAML, safetensors, PIL, zarr metadata), which are matched by class name so that this
module imports none of them. An exception raised inside a plugin's hook names the plugin. Any other
exception is a bug: it keeps its traceback. ``FOURM_DEBUG=1`` shows the traceback of every error.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import click

from .errors import FourmError
from .manager import get_manager

#: set to 1 to see the traceback of every error, the one-line ones included
DEBUG_ENV = "FOURM_DEBUG"

#: errors that are the user's to fix although they are not FourmError: dotted class name (matched along the
#: exception's MRO) -> what the line says before the library's message, and the fix after it
USER_ERRORS: dict[str, tuple[str, str]] = {
    "fourm_core.errors.CheckpointError": ("", ""),
    "fourm_core.errors.ModDictError": ("", ""),
    "fourm_core.model.config.ConfigError": ("model config: ", ""),
    "fourm_core.plugin_kit.seqtext.SerializationError": ("", ""),
    "yaml.error.YAMLError": ("invalid YAML: ", "fix the YAML syntax (quote values that contain ': ', '{' or '[')"),
    "safetensors._safetensors_rust.SafetensorError": (
        "a .safetensors file is corrupt or truncated: ", "re-download or re-save the file"),
    "PIL.UnidentifiedImageError": ("", "pass a readable image file"),
    "zarr.errors.MetadataValidationError": (
        "zarr metadata is invalid: ", "restore the store's zarr.json from a copy or re-create the store"),
    "zarr.errors.NodeTypeValidationError": ("", "check the store path"),
    "zarr.errors.GroupNotFoundError": ("", "check the store path (`fourm ingest PHOTOS/ STORE` creates a store)"),
}


def _dotted(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _plugin_hook_of(exc: BaseException) -> tuple[str, str] | None:
    """``(module, hook)`` of the plugin hook implementation an exception was raised in, if any: the first
    ``fourm_*`` function of the traceback that pluggy or the plugin manager called."""
    tb = exc.__traceback__
    caller = ""
    while tb is not None:
        frame = tb.tb_frame
        module = frame.f_globals.get("__name__", "")
        if (frame.f_code.co_name.startswith("fourm_") and caller.startswith(("pluggy", "fourm_registry.manager"))
                and not module.startswith(("pluggy", "fourm_registry"))):
            return module, frame.f_code.co_name
        caller = module
        tb = tb.tb_next
    return None


def _plugin_named(module: str) -> str | None:
    try:
        infos = get_manager().plugins()
    except Exception:  # noqa: BLE001 - only used to name the plugin in a message
        return None
    for info in infos:
        if module == info.module or module.startswith(info.module.split(":")[0] + "."):
            return info.name
    return None


def error_line(exc: BaseException) -> str | None:
    """The one-line message (without ``error: ``) of an error the user can fix, or ``None`` for a bug."""
    if isinstance(exc, FourmError):
        return str(exc)
    names = [_dotted(c) for c in type(exc).__mro__]
    for name in names:
        if name in USER_ERRORS:
            before, fix = USER_ERRORS[name]
            text = " ".join(str(exc).split()) or type(exc).__name__
            if before and text.startswith(before.strip(": ")):
                before = ""
            return f"{before}{text}" + (f"; {fix}" if fix else "")
    hook = _plugin_hook_of(exc)
    if hook is not None and isinstance(exc, Exception):
        module, hook_name = hook
        plugin = _plugin_named(module)
        who = f"fourm plugin {plugin!r} ({module})" if plugin else f"plugin module {module!r}"
        skip = f", or skip it with FOURM_DISABLE_PLUGINS={plugin}" if plugin else ""
        return (f"{who} failed in its hook {hook_name}: {type(exc).__name__}: {' '.join(str(exc).split())}. "
                f"Fix or reinstall the plugin{skip}")
    return None


def _shown_line(exc: BaseException) -> str | None:
    """:func:`error_line`, unless ``FOURM_DEBUG`` asks for tracebacks."""
    if os.environ.get(DEBUG_ENV, "") not in ("", "0"):
        return None
    return error_line(exc)


@contextlib.contextmanager
def context(what: str) -> Iterator[None]:
    """Re-raise an error the user can fix as a :class:`FourmError` whose line starts with ``what`` (the file,
    store or option it is about): a library's message rarely names the file. Bugs pass unchanged."""
    try:
        yield
    except FourmError:
        raise
    except Exception as exc:
        line = error_line(exc)
        if line is None:
            raise
        raise FourmError(f"{what}: {line}") from exc


def check_launcher(env: dict[str, str] | None = None) -> None:
    """Refuse ``accelerate launch --cpu --num_processes N`` (N > 1): accelerate's simple launcher then starts
    one process, with a rendezvous address set for N but no rank (``WORLD_SIZE`` unset)."""
    env = os.environ if env is None else env
    use_cpu = env.get("ACCELERATE_USE_CPU", "").lower() in ("true", "1", "yes")
    if use_cpu and "MASTER_ADDR" in env and "WORLD_SIZE" not in env:
        raise FourmError(
            "`accelerate launch --cpu --num_processes N` starts ONE process (accelerate's simple launcher ignores "
            "--num_processes with --cpu); for N CPU processes run `accelerate launch --multi_gpu --num_processes N "
            "...` without --cpu on a machine without GPUs, or `torchrun --nproc_per_node N -m ...`")


def check_device(device: str) -> None:
    """A ``--device`` the machine has: ``cpu``, or ``cuda[:N]`` / ``mps`` only where torch sees one."""
    import torch

    kind, _, index = str(device).partition(":")
    if kind == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0 or (index.isdigit() and int(index) >= count):
            have = f"{count} CUDA device(s)" if count else "no CUDA GPU (or this torch build has no CUDA)"
            raise FourmError(f"--device {device}: this machine has {have}; use --device cpu")
    elif kind == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise FourmError(f"--device {device}: MPS is not available on this machine; use --device cpu")
    else:
        try:
            torch.device(device)
        except (RuntimeError, TypeError) as exc:
            raise FourmError(f"--device {device!r} is not a torch device ({exc}); use cpu or cuda") from None


def run_command(command: click.Command, args: Sequence[str] | None = None, prog_name: str | None = None,
                **extra: Any) -> int:
    """Run a click command (or group) the way every fourm entry point does; returns the exit status: 0, 2 with
    one ``error:`` line for an error the user can fix (and for click's usage errors), 1 for ``Abort``.
    Unexpected exceptions propagate with their traceback."""
    try:
        check_launcher()
        result = command.main(args=None if args is None else list(args), prog_name=prog_name,
                              standalone_mode=False, **extra)
    except click.ClickException as exc:
        click.echo(f"error: {click_error_line(exc)}", err=True)
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.Abort:
        click.echo("Aborted!", err=True)
        return 1
    except Exception as exc:
        return _report(exc)
    return result if isinstance(result, int) else 0


def _report(exc: Exception) -> int:
    """Print the ``error:`` line of an error the user can fix and return 2; re-raise anything else."""
    line = _shown_line(exc)
    if line is None:
        raise exc
    click.echo(f"error: {line}", err=True)
    return 2


def click_error_line(exc: click.ClickException) -> str:
    """click's own errors (a bad option, a missing argument) on one line, with where the help is."""
    line = " ".join(exc.format_message().split())
    ctx = getattr(exc, "ctx", None)
    if isinstance(exc, click.UsageError) and ctx is not None:
        line += f" (see '{ctx.command_path} --help')"
    return line


class FourmGroup(click.Group):
    """Turns errors the user can fix into one clean line (exit code 2) instead of a traceback, also when
    invoked directly (e.g. by click's test runner): :func:`run_command` is its standalone main."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        sys.exit(run_command(self, args, prog_name, complete_var=complete_var, **extra))


@click.group(cls=FourmGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="fourm-registry", prog_name="fourm")
def cli() -> None:
    """fourm: massively multimodal masked modeling, one plugin per modality."""


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """``rows`` under ``headers`` in left-aligned columns two spaces apart (no trailing spaces)."""
    cells = [[str(h) for h in headers], *[[str(c) for c in r] for r in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells)


@cli.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="print a JSON list")
def plugins_cmd(as_json: bool) -> None:
    """List installed fourm plugins: distribution, version, hooks."""
    infos = get_manager().plugins()
    if as_json:
        click.echo(json.dumps([
            {"name": i.name, "module": i.module, "distribution": i.distribution, "version": i.version,
             "hooks": list(i.hooks)} for i in infos
        ], indent=2))
        return
    if not infos:
        click.echo("no plugins: install fourm-core and a modality plugin (e.g. pip install -e plugins/rgb)")
        return
    click.echo(format_table(["PLUGIN", "DISTRIBUTION", "VERSION", "HOOKS"],
                            [(i.name, i.distribution, i.version, ", ".join(i.hooks)) for i in infos]))


@cli.command("modalities")
@click.option("--json", "as_json", is_flag=True, help="print a JSON list")
def modalities_cmd(as_json: bool) -> None:
    """List every registered modality."""
    mods = get_manager().modalities()
    if as_json:
        click.echo(json.dumps([s.to_json() for s in mods.specs], indent=2))
        return
    if not len(mods):
        click.echo("no modalities: install a modality plugin (e.g. pip install -e plugins/rgb)")
        return
    rows = [(s.name, s.kind, "-" if s.num_tokens is None else s.num_tokens,
             "-" if s.vocab_size is None else s.vocab_size, s.plugin, s.version,
             ",".join(k for k, v in s.components().items() if v) or "-") for s in mods.specs]
    click.echo(format_table(["MODALITY", "KIND", "TOKENS", "VOCAB", "PLUGIN", "VERSION", "COMPONENTS"], rows))


def main(argv: list[str] | None = None) -> None:
    """The ``fourm`` executable."""
    try:
        get_manager().register_commands(cli)
    except Exception as exc:
        sys.exit(_report(exc))
    cli.main(args=argv, prog_name="fourm")


if __name__ == "__main__":
    main()
