"""Every command's ``--help``: each option's default shown once, and never a default that says nothing."""

import argparse
import importlib
import re
import tomllib

import pytest

from cs336_lm.cli import HelpFormatter

from ..conftest import REPO_ROOT

SCRIPTS = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]


@pytest.mark.parametrize("command", sorted(SCRIPTS))
def test_help_shows_each_default_once_and_no_empty_ones(command):
    module = importlib.import_module(SCRIPTS[command].split(":")[0])
    parser = module.build_parser()
    assert issubclass(parser.formatter_class, HelpFormatter), command
    text = parser.format_help()
    assert "(default: None)" not in text and "(default: False)" not in text, text
    for action in parser._actions:
        if action.help and action.option_strings and action.help is not argparse.SUPPRESS:
            formatted = HelpFormatter(command)._get_help_string(action) or ""
            assert len(re.findall(r"\(default:", formatted)) <= 1, (command, formatted)


def test_the_formatter_keeps_a_default_worth_showing():
    p = argparse.ArgumentParser(formatter_class=HelpFormatter)
    p.add_argument("--size", type=int, default=8, help="batch size")
    p.add_argument("--workers", type=int, default=None, help="workers (default: one per CPU)")
    p.add_argument("--out", required=True, help="where to write")
    p.add_argument("--quiet", action="store_true", help="no output")
    text = " ".join(p.format_help().split())
    assert "batch size (default: 8)" in text and "workers (default: one per CPU) --out" in text
    assert "where to write --quiet" in text and "no output" in text and "False" not in text
