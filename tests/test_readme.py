"""The README's config examples are real configs: each one that declares monitors loads as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from horus.config.loader import parse_config

README = Path(__file__).parents[1] / "README.md"
BLOCKS = [
    (language, body)
    for language, body in re.findall(r"```(json|yaml)\n(.*?)```", README.read_text(encoding="utf-8"), re.DOTALL)
    # Whole configs only: a top-level `monitors`, not a fragment that merely mentions monitors.
    if re.search(r'^monitors:|^\s*"monitors": \[', body, re.MULTILINE)
]


def test_the_readme_has_config_examples():
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize(("language", "body"), BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_each_config_example_in_the_readme_loads(language, body):
    config = parse_config(body, suffix=f".{language}", source="README.md")
    assert config.monitors
