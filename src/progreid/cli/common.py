"""Argument helpers shared by several sub-commands."""

from __future__ import annotations

from typing import Any

import yaml

from progreid.config import ConfigError


def parse_options(items: list[str]) -> dict[str, Any]:
    """``["variant=labeled", "seed=3"]`` -> ``{"variant": "labeled", "seed": 3}`` (YAML values)."""
    options: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--option {item!r}: expected key=value")
        options[key] = yaml.safe_load(text)
    return options
