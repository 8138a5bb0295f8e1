"""``python -m fourm_quickstart [OPTIONS]``: the same click command as ``fourm quickstart``."""

from .cli import quickstart_cmd

if __name__ == "__main__":
    quickstart_cmd(prog_name="python -m fourm_quickstart")
