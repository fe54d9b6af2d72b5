"""One module per `progreid` sub-command, each with ``register(subparsers)``."""

from progreid.commands import (
    datasets,
    demo,
    evaluate,
    export,
    index,
    plot,
    prepare,
    profile,
    report,
    search,
    synth,
    train,
)

COMMANDS = [train, evaluate, datasets, prepare, synth, demo, plot, profile, export, index, search,
            report]
