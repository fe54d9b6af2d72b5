"""The layers of the package: inference commands load no training code, and the training
drivers do not import the run module back."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import progreid

SRC = str(Path(progreid.__path__[0]).parent)
PROBE = """
import json, sys
from progreid.cli import main
for args in {commands!r}:
    main(args)
print(json.dumps(sorted(m for m in sys.modules if m.startswith("progreid.training"))))
"""


def loaded_training_modules(commands: list[list[str]]) -> list[str]:
    """The ``progreid.training`` modules loaded after running ``commands`` in a fresh Python
    (they fail on missing paths, after their imports)."""
    out = subprocess.run([sys.executable, "-c", PROBE.format(commands=commands)],
                         capture_output=True, text=True, timeout=300, check=True,
                         env={"PYTHONPATH": SRC})
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_inference_commands_import_no_training_code(tmp_path) -> None:
    missing = str(tmp_path / "missing")
    assert loaded_training_modules([
        ["evaluate", missing], ["index", missing, missing, "--out", str(tmp_path / "index")],
        ["search", missing, missing], ["export", missing]]) == []


def test_training_modules_import_in_any_order_without_a_cycle() -> None:
    for module in ("pla", "trc", "hooks", "trainer", "run"):
        subprocess.run([sys.executable, "-c", f"import progreid.training.{module}"], check=True,
                       timeout=300, env={"PYTHONPATH": SRC})
        source = Path(progreid.__path__[0], "training", f"{module}.py").read_text()
        assert module == "run" or "progreid.training.run" not in source, module
