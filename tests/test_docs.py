"""Documentation that cannot rot: README.md and docs/*.md checked against the code.

Nothing here runs a command, trains, downloads or writes a file; blocks that need data or a GPU
are checked statically like any other.

- **Links**: every relative link ``[text](target)`` outside fenced blocks points at an existing
  file or folder (relative to the page), and a ``#anchor`` (alone, or after a ``.md`` target) at
  a heading of that page, slugged as GitHub does (lower case; punctuation other than ``-`` and
  ``_`` dropped; spaces become ``-``; a repeated slug gets ``-1``, ``-2``, ...).
- **Commands**: in fenced ``bash`` blocks (continuation lines joined, ``#`` comments dropped),
  every ``progreid [GLOBAL-OPTIONS] SUBCOMMAND`` (also ``.venv/bin/progreid``, ``-m progreid``)
  names a sub-command of :func:`progreid.cli.build_parser` (and a nested one, as in ``prepare
  cuhk03``), and every ``--flag`` after it on that line, up to a shell separator, is an option
  that sub-command (or the main parser, before it) defines, spelled out in full.
- **Recipes**: every ``configs/....yaml`` path mentioned anywhere exists and loads with
  :func:`progreid.config.load_config`.
- **--set**: every ``--set KEY=VALUE`` in a fenced block names a real config key. A value that
  holds a placeholder in capitals (a word of two or more capital letters, digits or ``_``:
  ``DIR``, ``PATH/TO/market1501``, ``RUN``) is not a real value: only its key is checked, against
  the fields of :class:`progreid.config.Config`. The other overrides of a line are applied
  together with ``load_config(recipe, overrides)`` to each ``configs/....yaml`` the line names,
  to the demo's recipe on a ``progreid demo`` line, and to the defaults otherwise; on a
  ``progreid evaluate`` line they must also be ``eval.*`` settings (the command refuses others).
- **Python**: every fenced ``python`` block is valid Python (parsed, not run).
- **README**: at most 170 lines, with ``make demo`` and ``make test`` as commands of a fenced
  block within its first 120 lines (CI and newcomers look for them there).
"""

from __future__ import annotations

import argparse
import ast
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

from progreid.cli import build_parser
from progreid.cli.demo import demo_config_path
from progreid.cli.evaluate import check_eval_overrides
from progreid.config import METHOD_SECTIONS, Config, load_config

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 170
README_COMMANDS_WITHIN = 120

FENCE = re.compile(r"^\s*(```|~~~)\s*([\w+-]*)")
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
IMAGE = re.compile(r"!\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
INLINE_CODE = re.compile(r"`+[^`]*`+")
RECIPE = re.compile(r"configs/[\w./-]+?\.yaml\b")
PROGREID = re.compile(r"(?:^|[\s/])progreid\s+(.*)")
PLACEHOLDER = re.compile(r"\b[A-Z][A-Z0-9_]+\b")
SEPARATORS = {"|", "||", "&&", ";", "&"}
BASH = {"bash", "sh", "shell", "console"}


@dataclass
class Block:
    page: Path
    lang: str
    start: int  # line number of the first line inside the fence (1-based)
    lines: list[str]


def rel(page: Path) -> str:
    return str(page.relative_to(ROOT))


def split_page(page: Path) -> tuple[list[tuple[int, str]], list[Block]]:
    """The lines outside fenced blocks (with their numbers) and the fenced blocks."""
    prose: list[tuple[int, str]] = []
    blocks: list[Block] = []
    block: Block | None = None
    fence = ""
    for number, line in enumerate(page.read_text().splitlines(), 1):
        match = FENCE.match(line)
        if block is None and match:
            fence = match[1]
            block = Block(page, match[2].lower(), number + 1, [])
        elif block is not None and line.strip().startswith(fence) and not line.strip()[3:]:
            blocks.append(block)
            block = None
        elif block is not None:
            block.lines.append(line)
        else:
            prose.append((number, line))
    assert block is None, f"{rel(page)}: fenced block from line {block.start - 1} is not closed"
    return prose, blocks


def commands(block: Block) -> list[tuple[int, str]]:
    """A shell block's commands: continuation lines joined, comments dropped."""
    out: list[tuple[int, str]] = []
    pending, first = "", 0
    for number, line in enumerate(block.lines, block.start):
        if not pending:
            first = number
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        text = re.sub(r"(^|\s)#.*$", "", pending + line).strip()
        pending = ""
        if text:
            out.append((first, text))
    return out


def tokens(text: str) -> list[str]:
    try:
        return shlex.split(text)
    except ValueError:
        return text.split()


def slug(heading: str) -> str:
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link: its text
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    found = set()
    for _, line in split_page(page)[0]:
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not match:
            continue
        base = slug(match[1])
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def all_blocks() -> list[Block]:
    return [block for page in PAGES for block in split_page(page)[1]]


# ------------------------------------------------------------------ links
def test_every_relative_link_points_at_a_file_and_heading_that_exist() -> None:
    broken = []
    checked = 0
    for page in PAGES:
        for number, line in split_page(page)[0]:
            line = INLINE_CODE.sub("", line)
            for target in LINK.findall(line) + IMAGE.findall(line):
                if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto: ...
                    continue
                checked += 1
                path_part, _, anchor = target.partition("#")
                where = f"{rel(page)}:{number}: {target}"
                path = (page.parent / path_part).resolve() if path_part else page
                if not path.exists():
                    broken.append(f"{where}: no such file")
                elif anchor and path.suffix == ".md" and anchor not in anchors(path):
                    broken.append(f"{where}: no heading #{anchor} in {rel(path)}")
    assert checked > 20 and broken == []


def test_slugs_follow_github() -> None:
    assert slug("Efficiency of the architectures (PLA Sec. 4.5)") == (
        "efficiency-of-the-architectures-pla-sec-45")
    assert slug("One-line errors and `--debug`") == "one-line-errors-and---debug"
    assert slug("What PLA's rounds chose") == "what-plas-rounds-chose"
    assert slug("`model.backbone` and data_root") == "modelbackbone-and-data_root"


# ------------------------------------------------------------------ commands and flags
def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def options(parser: argparse.ArgumentParser) -> set[str]:
    return set(parser._option_string_actions)


def progreid_commands() -> list[tuple[str, list[str]]]:
    """``(where, tokens after 'progreid')`` of every progreid command of every shell block."""
    found = []
    for block in all_blocks():
        if block.lang not in BASH:
            continue
        for number, text in commands(block):
            match = PROGREID.search(text)
            if match:
                found.append((f"{rel(block.page)}:{number}", tokens(match[1])))
    return found


def check_command(parser: argparse.ArgumentParser, words: list[str]) -> list[str]:
    """What is wrong with ``progreid WORDS``: unknown sub-commands or options."""
    problems = []
    main_options = options(parser)
    index = 0
    while index < len(words) and words[index].startswith("-"):
        if words[index].split("=")[0] not in main_options:
            problems.append(f"progreid has no option {words[index]}")
        index += 1
    if index == len(words):
        return [*problems, "no sub-command"]
    current, path = parser, ["progreid"]
    for word in words[index:]:
        if word in SEPARATORS:
            break
        children = subparsers(current)
        if children and not word.startswith("-"):
            if word not in children:
                problems.append(f"{' '.join(path)} has no sub-command {word!r}; it has "
                                f"{', '.join(children)}")
                break
            current, path = children[word], [*path, word]
        elif word.startswith("--") and word.split("=")[0] not in options(current):
            problems.append(f"{' '.join(path)} has no option {word.split('=')[0]}")
    return problems


def test_every_progreid_command_in_a_shell_block_exists_with_its_flags() -> None:
    parser = build_parser()
    found = progreid_commands()
    problems = [f"{where}: {problem}" for where, words in found
                for problem in check_command(parser, words)]
    named = {word for _, words in found for word in words[:2] if word in subparsers(parser)}
    assert len(found) > 30 and len(named) >= 8 and problems == []


def test_the_command_check_finds_mistakes() -> None:
    parser = build_parser()
    assert check_command(parser, ["train", "x.yaml", "--resume", "--set", "a=b"]) == []
    assert check_command(parser, ["--debug", "prepare", "cuhk03", "a", "b", "c"]) == []
    assert check_command(parser, ["trian", "x.yaml"])[0].startswith("progreid has no sub-command")
    assert check_command(parser, ["train", "x.yaml", "--resum"]) == [
        "progreid train has no option --resum"]
    assert check_command(parser, ["prepare", "cuhk02"])[0].startswith(
        "progreid prepare has no sub-command 'cuhk02'")
    assert check_command(parser, ["--nope", "demo"]) == ["progreid has no option --nope"]


# ------------------------------------------------------------------ recipes and --set
def test_every_recipe_mentioned_exists_and_loads() -> None:
    mentioned = {(rel(page), path) for page in PAGES for path in RECIPE.findall(page.read_text())}
    problems = []
    for page, path in sorted(mentioned):
        if not (ROOT / path).is_file():
            problems.append(f"{page}: {path} does not exist")
            continue
        try:
            load_config(ROOT / path)
        except Exception as exc:  # noqa: BLE001 - any failure is the finding
            problems.append(f"{page}: {path} does not load: {exc}")
    assert len(mentioned) > 10 and problems == []


def is_placeholder(value: str) -> bool:
    return PLACEHOLDER.search(value) is not None


def key_exists(key: str) -> bool:
    """``section.field`` of :class:`Config` (or a method section alone, as in ``trc=null``)."""
    parts = key.split(".")
    if len(parts) == 1:
        return parts[0] in METHOD_SECTIONS
    section = Config.model_fields.get(parts[0])
    return (len(parts) == 2 and section is not None
            and parts[1] in section.annotation.model_fields)


def set_overrides(words: list[str]) -> list[str]:
    """The ``KEY=VALUE`` of every ``--set`` in ``words`` (``--set X`` or ``--set=X``)."""
    found = []
    for i, word in enumerate(words):
        if word == "--set" and i + 1 < len(words):
            found.append(words[i + 1])
        elif word.startswith("--set="):
            found.append(word.removeprefix("--set="))
    return found


def check_overrides(text: str) -> list[str]:
    """What is wrong with the ``--set`` overrides of one command line (see the docstring)."""
    words = tokens(text)
    overrides = set_overrides(words)
    if not overrides:
        return []
    problems = []
    real = []
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            problems.append(f"--set {item}: expected KEY=VALUE")
        elif is_placeholder(value):
            if not key_exists(key.strip()):
                problems.append(f"--set {item}: no config key {key}")
        else:
            real.append(item)
    recipes = [ROOT / path for path in RECIPE.findall(text)]
    match = PROGREID.search(text)
    command = [w for w in tokens(match[1]) if not w.startswith("-")][:1] if match else []
    if not recipes:
        recipes = [demo_config_path() if command == ["demo"] else None]
    try:
        if command == ["evaluate"]:
            check_eval_overrides(overrides)
        for recipe in recipes:
            load_config(recipe, real)
    except Exception as exc:  # noqa: BLE001 - any failure is the finding
        problems.append(str(exc))
    return problems


def test_every_set_in_a_fenced_block_names_a_real_config_key() -> None:
    checked = 0
    problems = []
    for block in all_blocks():
        for number, text in commands(block):
            checked += len(set_overrides(tokens(text)))
            problems += [f"{rel(block.page)}:{number}: {problem}"
                         for problem in check_overrides(text)]
    assert checked > 10 and problems == []


@pytest.mark.parametrize(("line", "fails"), [
    ("progreid train configs/cuhk01/baseline.yaml --set data.root=DIR", False),
    ("progreid train configs/cuhk01/baseline.yaml --set data.roots=DIR", True),
    ("progreid train configs/cuhk01/baseline.yaml --set optim.lr=3e-4", False),
    ("progreid train configs/cuhk01/baseline.yaml --set optim.lrate=3e-4", True),
    ("progreid train configs/cuhk01/baseline.yaml --set optim.lr=fast", True),
    ("progreid evaluate runs/x --set eval.rerank=true", False),
    ("progreid evaluate runs/x --set optim.lr=0.1", True),
    ("progreid demo --set train.epochs=2", False),
    ("python benchmarks/accuracy.py --set eval.ten_crop=false", False),
])
def test_the_set_check_finds_mistakes(line: str, fails: bool) -> None:
    assert bool(check_overrides(line)) == fails


# ------------------------------------------------------------------ python blocks
def test_every_python_block_parses() -> None:
    problems = []
    for block in all_blocks():
        if block.lang in ("python", "py"):
            try:
                ast.parse("\n".join(block.lines))
            except SyntaxError as exc:
                problems.append(f"{rel(block.page)}:{block.start + (exc.lineno or 1) - 1}: "
                                f"{exc.msg}")
    assert problems == []


# ------------------------------------------------------------------ the README as a front door
def test_readme_is_short_and_shows_the_two_commands_early() -> None:
    readme = ROOT / "README.md"
    assert len(readme.read_text().splitlines()) <= README_MAX_LINES
    early = {" ".join(text.split()[:2]) for block in split_page(readme)[1] if block.lang in BASH
             for number, text in commands(block) if number <= README_COMMANDS_WITHIN}
    assert {"make demo", "make test"} <= early


def test_every_figure_of_the_readme_results_is_in_the_accuracy_doc() -> None:
    """The README's result tables are copies: each figure (``58.0 ± 1.2``, ``68.3``) stands in
    docs/accuracy.md, which the accuracy benchmark and the measured runs write, so a figure
    changed there and not here (or made up here) fails."""
    readme = (ROOT / "README.md").read_text()
    results = readme[readme.index("## Results"):readme.index("\n## ", readme.index("## Results")
                                                               + 1)]
    rows = [line for line in results.splitlines() if line.startswith("|")]
    figures = {m for row in rows for m in re.findall(r"\d+\.\d(?: ± \d+\.\d)?", row)}
    assert len(figures) >= 10, figures
    accuracy = (ROOT / "docs" / "accuracy.md").read_text()
    assert {figure for figure in figures if figure not in accuracy} == set()
