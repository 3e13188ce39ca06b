"""A sweep stopped by SIGINT and run again; two ``lm-sweep`` processes on one study; a study on a real PostgreSQL
server (started by the test in a temporary directory, skipped with a note where PostgreSQL is not installed)."""

import csv
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import optuna
import pytest

from cs336_lm.training.metrics import read_metrics

from ..training.conftest import REPO
from .conftest import run_sweep_cli, sweep_command, sweep_env


def summary(out):
    with open(out / "summary.csv", newline="") as f:
        return {r["trial"]: r for r in csv.DictReader(f)}


def steps_logged(run_dir):
    return [m["step"] for m in read_metrics(run_dir / "metrics.jsonl") if "loss" in m]


def wait_for(predicate, timeout=120.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


@pytest.mark.slow
def test_sigint_stops_cleanly_and_a_rerun_completes(tmp_path, fixed):
    out = tmp_path / "sweep"
    items = [*fixed({"train.max_steps": 1500, "train.ckpt_every": 20, "train.log_every": 10}), "optim.lr=1e-2,3e-3"]
    proc = subprocess.Popen(sweep_command(out, items), env=sweep_env(), cwd=REPO, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)  # fmt: skip
    first = out / "lr=0.01"
    wait_for(lambda: (first / "metrics.jsonl").is_file() and max(steps_logged(first), default=0) >= 60)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert "received SIGINT" in stdout and "run the same command again to resume" in stderr
    rows = summary(out)
    assert rows["lr=0.01"]["status"] == "interrupted" and rows["lr=0.003"]["status"] == "pending"
    stopped_at = max(steps_logged(first))
    assert stopped_at < 1500 and list((first / "checkpoints").glob("step_*.pt"))  # it saved where it stopped

    again = run_sweep_cli(out, items)
    assert again.returncode == 0, again.stderr
    rows = summary(out)
    assert {r["status"] for r in rows.values()} == {"done"}
    steps = steps_logged(first)
    assert steps == sorted(set(steps)) and steps[-1] == 1500  # resumed, not begun again: no step logged twice
    assert "resuming from" in (out / "logs" / "lr=0.01.log").read_text()


@pytest.mark.slow
def test_two_processes_share_one_study_and_never_run_a_trial_twice(tmp_path, fixed):
    out = tmp_path / "shared"
    items = [*fixed({"train.max_steps": 30}), "optim.lr=1e-3,3e-3,1e-2,3e-2"]
    launch = dict(env=sweep_env(), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    procs = [subprocess.Popen(sweep_command(out, items), **launch) for _ in range(2)]
    results = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    ran = [line.split(":")[0] for out_text, _ in results for line in out_text.splitlines() if ": done" in line]
    assert sorted(ran) == sorted(["lr=0.001", "lr=0.003", "lr=0.01", "lr=0.03"])  # each trial by exactly one process
    study = optuna.load_study(study_name="shared", storage=f"sqlite:///{out / 'study.db'}")
    done = [t.user_attrs["name"] for t in study.trials if t.user_attrs.get("status") == "done"]
    assert sorted(done) == sorted(ran)
    for name in ran:
        log = (out / "logs" / f"{name}.log").read_text()
        assert log.count("starting fresh") == 1 and "resuming" not in log
        assert steps_logged(out / name) == list(range(1, 31))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def postgres(tmp_path):
    """A throwaway PostgreSQL cluster on a free port: ``postgresql://USER@127.0.0.1:PORT/postgres``."""
    bindir = Path("/usr/lib/postgresql")
    found = sorted(bindir.glob("*/bin/initdb")) if bindir.is_dir() else []
    initdb = shutil.which("initdb") or (str(found[-1]) if found else None)
    if initdb is None:
        pytest.skip("PostgreSQL is not installed (make postgres, or apt-get install postgresql)")
    pg_ctl = str(Path(initdb).with_name("pg_ctl"))
    root = os.geteuid() == 0
    if root and shutil.which("runuser") is None:
        pytest.skip("running as root without runuser: PostgreSQL refuses to run as root")
    user = "postgres" if root else None
    prefix = ["runuser", "-u", "postgres", "--"] if root else []
    # as root the cluster belongs to the postgres user, who cannot enter pytest's private tmp_path: a /tmp folder
    home = Path(tempfile.mkdtemp(prefix="lm-sweep-pg-")) if root else tmp_path
    data = home / "pg"
    if root:
        shutil.chown(home, user="postgres")
    subprocess.run([*prefix, initdb, "-D", str(data), "-A", "trust", "-U", user or os.environ.get("USER", "test")],
                   check=True, capture_output=True, timeout=120)  # fmt: skip
    port = free_port()
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {data}"
    subprocess.run([*prefix, pg_ctl, "-D", str(data), "-o", options, "-w", "-l", str(data / "log"), "start"],
                   check=True, capture_output=True, timeout=120)  # fmt: skip
    try:
        yield f"postgresql://{user or os.environ.get('USER', 'test')}@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*prefix, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True, timeout=60)
        if root:
            shutil.rmtree(home, ignore_errors=True)


@pytest.mark.slow
def test_a_study_on_postgresql(tmp_path, fixed, postgres):
    items = [*fixed(), "optim.lr=1e-3,1e-2"]
    result = run_sweep_cli(tmp_path / "pg-sweep", items, "--storage", postgres, "--study", "lr")
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "pg-sweep" / "study.db").exists()
    url = postgres.replace("postgresql://", "postgresql+psycopg2://")
    study = optuna.load_study(study_name="lr", storage=url)
    assert sorted(t.user_attrs["name"] for t in study.trials) == ["lr=0.001", "lr=0.01"]
    assert all(t.state.name == "COMPLETE" for t in study.trials)
    assert {t.value for t in study.trials} == {
        float(r["best_val_loss"]) for r in summary(tmp_path / "pg-sweep").values()
    }
    # a second machine would see the same study: a rerun elsewhere (another DIR) has nothing left to train
    elsewhere = run_sweep_cli(tmp_path / "machine-2", items, "--storage", postgres, "--study", "lr")
    assert elsewhere.returncode == 0 and len(summary(tmp_path / "machine-2")) == 2
    assert not any((tmp_path / "machine-2").glob("lr=*"))
