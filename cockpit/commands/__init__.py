"""One module per subcommand. Each has ``register(sub)``: it adds its parser(s) to the
``cockpit`` subparsers and sets ``func`` (``set_defaults(func=...)``), the function that runs it
with the parsed arguments and returns the exit code. A module imports what its command needs
inside that function, so ``cockpit --help`` and every other command start without it.

A new command is a new module here plus its name in ``ORDER`` (the order ``--help`` lists)."""

from __future__ import annotations

import importlib

ORDER = ("run", "resume", "complete", "export", "analyze", "compare", "metrics", "findings", "ablate", "sweep",
         "serve", "corpora",
         "queue", "slurm", "worker", "status", "keepawake", "bench")


def register_all(sub) -> None:
    for name in ORDER:
        importlib.import_module(f"cockpit.commands.{name}").register(sub)
