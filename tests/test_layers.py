"""The layers of the package (docs/contributing.md, Layers): each source file imports only its
own layer and the layers below; inference commands load no training code; no import cycle in
training."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import progreid

PACKAGE = Path(progreid.__path__[0])
SRC = str(PACKAGE.parent)
#: The layers of docs/contributing.md, lowest first, by top-level name under ``progreid``.
#: (``progreid/__init__`` re-exports the Python API lazily, by name: it imports nothing.)
LAYERS = [("foundation", {"__init__", "errors", "utils"}), ("data", {"data"}),
          ("models and losses", {"models", "losses"}), ("recipe schema", {"config"}),
          ("evaluation", {"evaluation"}), ("deployment", {"deploy"}),
          ("use-side tools", {"search", "report", "profiling"}), ("training", {"training"}),
          ("command line", {"cli", "__main__"})]
LEVEL = {name: level for level, (_, names) in enumerate(LAYERS) for name in names}
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


def runtime_imports(tree: ast.Module) -> list[str]:
    """The ``progreid.X`` top-level names a module imports when it runs (``if TYPE_CHECKING:``
    blocks are for the type checker only)."""
    skipped = {id(node) for block in ast.walk(tree) if isinstance(block, ast.If)
               and ast.unparse(block.test) == "TYPE_CHECKING" for stmt in block.body
               for node in ast.walk(stmt)}
    names = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("progreid"):
            modules = [node.module]
        elif isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        else:
            continue
        names += [m.split(".")[1] for m in modules if m.startswith("progreid.")]
    return names


def test_every_source_file_imports_only_its_layer_and_below() -> None:
    files = sorted(PACKAGE.rglob("*.py"))
    upward = []
    for path in files:
        own = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
        assert own in LEVEL, f"{path} belongs to no layer of docs/contributing.md"
        for name in runtime_imports(ast.parse(path.read_text())):
            if LEVEL[name] > LEVEL[own]:
                upward.append(f"{path.relative_to(PACKAGE)} imports progreid.{name} "
                              f"({LAYERS[LEVEL[name]][0]} is above {LAYERS[LEVEL[own]][0]})")
    assert len(files) > 90 and upward == []
