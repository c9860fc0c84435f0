"""``supcon-ray tune|train|report|power``: the one command (each also runs as ``python -m supcon_ray.<name>``).

``supcon-ray <command> --help`` describes every option of a command, with its default and, where names
come from a registry, the names registered (``supcon-ray train --plugins MODULE --help`` lists a
plugin's too). Commands are imported only when run, so ``supcon-ray --help`` loads no torch or Ray.
"""

from __future__ import annotations

import importlib
import sys

from supcon_ray import __version__
from supcon_ray.config import EXIT_USAGE

#: Each command: its module (with a ``main(argv, prog)``) and what it does.
COMMANDS = {
    "tune": ("supcon_ray.tune", "run a study file on Ray Tune (--quick: offline on a CPU in minutes)"),
    "train": ("supcon_ray.train", "one training run, in this process or on Ray Train"),
    "report": ("supcon_ray.report", "the stability report of one or more study folders (HTML, JSON, Markdown)"),
    "power": ("supcon_ray.power", "what design (settings x seeds) would decide each question"),
}


def usage() -> str:
    lines = [f"usage: supcon-ray {{{','.join(COMMANDS)}}} [options]   (supcon-ray {__version__})", "",
             "Is a training method robust to its hyperparameters? Studies of SupCon, CE and your own methods.", "",
             "commands:"]
    lines += [f"  {name:<8} {text}" for name, (_, text) in COMMANDS.items()]
    lines += ["", "supcon-ray <command> --help describes each command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run ``argv`` (default: the process's arguments) as ``supcon-ray <command> ...``; return the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else EXIT_USAGE
    if argv[0] == "--version":
        print(f"supcon-ray {__version__}")
        return 0
    command = argv[0]
    if command not in COMMANDS:
        print(f"error: unknown command {command!r}; must be one of: {', '.join(COMMANDS)}", file=sys.stderr)
        return EXIT_USAGE
    module = importlib.import_module(COMMANDS[command][0])
    return module.main(argv[1:], prog=f"supcon-ray {command}")


if __name__ == "__main__":
    sys.exit(main())
