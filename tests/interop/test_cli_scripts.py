"""The interop and evaluation commands are console scripts whose ``--help`` shows every default."""

import importlib
import re
from pathlib import Path

import pytest

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"
COMMANDS = {
    "lm-export": ("cs336_lm.cli.export", "(default: fp32)"),
    "lm-import": ("cs336_lm.cli.import_", "--force"),
    "lm-compare": ("cs336_lm.cli.compare", "(default: 0.0001)"),
    "lm-perplexity": ("cs336_lm.cli.perplexity", "(default: auto)"),
}


@pytest.mark.parametrize("command", COMMANDS)
def test_declared_and_helpful(command, capsys):
    module, shown = COMMANDS[command]
    assert re.search(rf'^{command} = "{re.escape(module)}:main"$', PYPROJECT.read_text(), flags=re.M)
    with pytest.raises(SystemExit) as info:
        importlib.import_module(module).main(["--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith(f"usage: {command} ") and shown in text
