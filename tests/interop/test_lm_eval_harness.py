"""EleutherAI's lm-evaluation-harness scores a multiple-choice task through ``lm-serve`` exactly as it does with its
own ``hf`` backend on our exported folder: the same accuracy, the same log-likelihood of every choice.

The harness's ``local-completions`` model asks ``/v1/completions`` for ``echo`` + ``logprobs: 1`` + ``max_tokens:
1`` on the token ids of context and choice (several prompts a request, several requests at once) and sums the
choice tokens' ``token_logprobs``; its ``hf`` backend runs transformers on the folder ``lm-export`` wrote. The task
is a JSONL file and a task YAML in the test's temporary directory. The harness runs in a child process whose every
cache (HuggingFace hub, datasets) lives under that directory, offline, and whose torch uses one thread.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("lm_eval")
pytest.importorskip("transformers")

from .conftest import REPO, ServeProcess

TASK = "tiny_choice"
DOCS = [
    ("Once upon a time there was a", ["little girl", "big dog", "tree"], 0),
    ("The cat sat on the", ["mat", "moon", "sky", "dog"], 0),
    ("Lily liked to play with her", ["ball", "friend"], 1),
    ("Tom was very", ["happy", "sad", "tired"], 2),
    ("One day, a boy named Tim went to the", ["park", "store", "sea"], 0),
    ("She smiled and said", ["thank you", "no", "hello there"], 1),
]
# the harness in a child process: argv = task, its folder, HF folder, server URL, served model name; prints JSON
HARNESS = """
import json, sys
import torch
torch.set_num_threads(1)
import lm_eval
from lm_eval.tasks import TaskManager

task, task_dir, folder, url, name = sys.argv[1:6]
tasks = TaskManager(include_path=task_dir)

def evaluate(model, args):
    out = lm_eval.simple_evaluate(model=model, model_args=args, tasks=[task], task_manager=tasks,
                                  log_samples=True, batch_size=1 if model == "hf" else 2)
    samples = sorted(out["samples"][task], key=lambda s: s["doc_id"])
    return {"acc": out["results"][task]["acc,none"], "choices": [s["filtered_resps"] for s in samples]}

hf = evaluate("hf", f"pretrained={folder},dtype=float32,device=cpu")
api = evaluate("local-completions", f"base_url={url}/v1/completions,model={name},tokenizer_backend=huggingface,"
               f"tokenizer={folder},max_length=64,num_concurrent=4,max_retries=1")
print(json.dumps({"hf": hf, "api": api}))
"""


def write_task(root: Path) -> Path:
    """The task's folder: ``docs.jsonl`` and a task YAML reading it through the ``json`` dataset builder."""
    root.mkdir()
    with open(root / "docs.jsonl", "w") as f:
        for question, choices, answer in DOCS:
            f.write(json.dumps({"question": question, "choices": choices, "answer": answer}) + "\n")
    (root / f"{TASK}.yaml").write_text(
        f"task: {TASK}\n"
        "dataset_path: json\n"
        f"dataset_kwargs:\n  data_files:\n    test: {root / 'docs.jsonl'}\n"
        "output_type: multiple_choice\n"
        "test_split: test\n"
        'doc_to_text: "{{question}}"\n'
        'doc_to_target: "{{answer}}"\n'
        'doc_to_choice: "{{choices}}"\n'
        "metric_list:\n  - metric: acc\n    aggregation: mean\n    higher_is_better: true\n"
    )
    return root


def test_the_harness_scores_a_task_through_the_server_as_through_transformers(tmp_path, run_dir, exported):
    cache = tmp_path / "cache"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "HF_HOME": str(cache / "hf"),
        "HF_DATASETS_CACHE": str(cache / "datasets"),
        "HF_HUB_CACHE": str(cache / "hub"),
        "XDG_CACHE_HOME": str(cache),
        "HF_DATASETS_OFFLINE": "1",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "OMP_NUM_THREADS": "1",
    }
    task_dir = write_task(tmp_path / "task")
    server = ServeProcess(run_dir, env)
    try:
        done = subprocess.run(
            [sys.executable, "-c", HARNESS, TASK, str(task_dir), str(exported), server.url, run_dir.name],
            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=240,
        )  # fmt: skip
    finally:
        server.stop()
    assert done.returncode == 0, done.stderr[-4000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    hf, api = out["hf"], out["api"]
    assert api["acc"] == hf["acc"]
    assert [len(c) for c in api["choices"]] == [len(choices) for _, choices, _ in DOCS]
    for doc, (ours, theirs) in enumerate(zip(api["choices"], hf["choices"], strict=True)):
        for (ll, greedy), (ll_hf, greedy_hf) in zip(ours, theirs, strict=True):
            assert ll == pytest.approx(ll_hf, abs=1e-4), doc
            assert greedy == greedy_hf, doc
