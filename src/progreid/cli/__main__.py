"""`python -m progreid.cli` runs the command-line interface."""

from progreid.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
