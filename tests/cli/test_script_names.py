"""No console script of ours shares its name with a command of a package our users install beside us.

Two distributions that declare the same console script write the same file into the environment's ``bin/``:
whichever was installed last owns the command, silently. ``lm-eval`` was ours and EleutherAI's
lm-evaluation-harness's (a dev dependency here) until ours became ``lm-perplexity``. ``KNOWN_COMMANDS`` lists the
commands of the packages that sit beside a language-model toolkit, each with the distribution that installs it;
and every distribution installed where the tests run is asked for its own scripts (``importlib.metadata``), so a
package that takes one of our names in a later release is caught wherever it is installed.
"""

import importlib.metadata as md
import re
import tomllib

import pytest

from ..conftest import REPO_ROOT

OURS = set(tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"])
OWN_DISTRIBUTION = "cs336-lm"

# command -> the distribution (PyPI name) that installs it
KNOWN_COMMANDS = {
    # EleutherAI's lm-evaluation-harness: both spellings run its evaluator
    "lm-eval": "lm-eval",
    "lm_eval": "lm-eval",
    # inference servers and fine-tuning kits
    "vllm": "vllm",  # vLLM: `vllm serve`, `vllm bench`
    "litgpt": "litgpt",  # Lightning AI's LitGPT
    "tune": "torchtune",  # PyTorch's torchtune recipes
    "llamafactory-cli": "llamafactory",  # LLaMA-Factory
    "deepspeed": "deepspeed",  # DeepSpeed's launcher, and its environment report
    "ds_report": "deepspeed",
    "llm": "llm",  # Simon Willison's llm
    "gguf-dump": "gguf",  # llama.cpp's gguf package
    # Hugging Face
    "transformers": "transformers",  # transformers 5
    "transformers-cli": "transformers",  # transformers 4
    "hf": "huggingface-hub",  # huggingface_hub >= 0.34
    "huggingface-cli": "huggingface-hub",  # huggingface_hub before 1.0
    "datasets-cli": "datasets",
    "evaluate-cli": "evaluate",
    "accelerate": "accelerate",
    "accelerate-launch": "accelerate",
    "accelerate-config": "accelerate",
    "kernels": "kernels",  # Hugging Face's kernel hub
    # PyTorch and the tools beside training
    "torchrun": "torch",
    "torchfrtrace": "torch",
    "proton": "triton",  # Triton's profiler
    "optuna": "optuna",
    "wandb": "wandb",  # Weights & Biases, and its short alias
    "wb": "wandb",
    "tensorboard": "tensorboard",
    "openai": "openai",  # the OpenAI client's command line (1.x; later releases dropped it)
}


def scripts_of(distribution: md.Distribution) -> set[str]:
    return {ep.name for ep in distribution.entry_points if ep.group in ("console_scripts", "gui_scripts")}


def canonical(name: str) -> str:
    """A distribution's name as PyPI compares them: ``Huggingface_Hub`` -> ``huggingface-hub``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def installed() -> dict[str, md.Distribution]:
    return {canonical(d.metadata["Name"]): d for d in md.distributions() if d.metadata["Name"]}


def test_no_script_of_ours_is_a_known_command():
    # compared case-folded: on macOS's and Windows' file systems LM-Eval and lm-eval are one file
    clashes = {name for name in OURS if name.casefold() in {k.casefold() for k in KNOWN_COMMANDS}}
    assert not clashes, {name: KNOWN_COMMANDS[name] for name in clashes}


def test_no_installed_distribution_declares_one_of_our_scripts():
    ours = {name.casefold() for name in OURS}
    clashes = {
        (name, dist_name)
        for dist_name, dist in installed().items()
        if dist_name != OWN_DISTRIBUTION
        for name in scripts_of(dist)
        if name.casefold() in ours
    }
    assert not clashes, f"installed distributions declare commands of ours: {sorted(clashes)}"


def test_the_list_names_real_commands_where_their_packages_are_installed():
    """Of each listed distribution that is installed, at least one listed command is really its own (versions
    rename some: transformers-cli became transformers), so a misspelt entry does not protect nothing silently."""
    present = installed()
    by_distribution: dict[str, set[str]] = {}
    for command, dist_name in KNOWN_COMMANDS.items():
        by_distribution.setdefault(dist_name, set()).add(command)
    checked = 0
    for dist_name, commands in by_distribution.items():
        if dist_name not in present or not scripts_of(present[dist_name]):
            continue  # not installed here, or a release without commands (openai after 1.x)
        assert commands & scripts_of(present[dist_name]), (dist_name, commands, scripts_of(present[dist_name]))
        checked += 1
    if not checked:
        pytest.skip("none of the listed packages that have commands is installed here")
