"""Tiny sweeps on configs/debug.yaml: the trainer tests' byte-level inputs and shrunken model, each sweep a subprocess
(``python -m cs336_lm.cli.sweep``) as a user runs it, so that SIGINT and several processes can be tested."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ..training.conftest import DEBUG_CONFIG, REPO, tiny_overrides, write_run_inputs


@pytest.fixture
def sweep_inputs(tmp_path) -> dict[str, Path]:
    return write_run_inputs(tmp_path / "inputs")


@pytest.fixture
def fixed(sweep_inputs):
    """``fixed({"train.max_steps": 20})`` → the tiny run's overrides for every trial (no ``train.out_dir``)."""

    def make(extra: dict | None = None) -> list[str]:
        items = tiny_overrides(sweep_inputs, Path("unused"), extra)
        return [i for i in items if not i.startswith("train.out_dir=")]

    return make


def sweep_command(out: Path, items: list[str], *options: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "cs336_lm.cli.sweep",
        "--config",
        str(DEBUG_CONFIG),
        *items,
        "--out",
        str(out),
        *options,
    ]


def run_sweep_cli(out: Path, items: list[str], *options: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        sweep_command(out, items, *options), capture_output=True, text=True, timeout=timeout, env=sweep_env(), cwd=REPO
    )


def sweep_env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env
