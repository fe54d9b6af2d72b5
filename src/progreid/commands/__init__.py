"""One module per `progreid` sub-command, each with ``register(subparsers)``."""

from progreid.commands import datasets, demo, evaluate, prepare, synth, train

COMMANDS = [train, evaluate, datasets, prepare, synth, demo]
