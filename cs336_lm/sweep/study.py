"""The sweep's record on Optuna: one study in a database, one Optuna trial per attempt at a trial of the plan.

``SweepStudy.open(plan, out_dir, storage)`` creates or loads the study (``sqlite:///DIR/study.db`` by default, or any
URL Optuna's RDB storage takes, e.g. ``postgresql://user@host/db``) and refuses one that another plan began. Each
attempt is an Optuna trial whose user attributes carry the plan's trial ``name``, its ``values`` and ``overrides``, a
``status`` (running, done, diverged, pruned, failed, interrupted, or duplicate for a claim that lost a race) and, once
it ended, the ``metrics`` of its run directory; its Optuna ``value`` is the best validation loss (inf when it
diverged), which a search's sampler minimises.

Claiming is how several workers and several machines share a study without running a trial twice: ``claim(trial)``
inserts a RUNNING attempt for the name, then reads the study back; if the name is already finished, or another live
attempt of it has a lower number, the new attempt is marked ``duplicate`` and the claim fails. Both racers insert
before they read, so at most one of them sees no rival. An attempt left RUNNING by a process that died is stale: at
once when its host is this one and its process is gone, else when Optuna's heartbeat (recorded while the trial runs)
is older than the grace period.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cs336_lm.errors import ConfigError, LMError
from cs336_lm.sweep.plan import SweepPlan, Trial, difference

FINISHED = ("done", "diverged", "pruned")  # a rerun leaves these alone; failed and interrupted trials run again
HEARTBEAT_S = 10
GRACE_S = 60


@dataclass
class Attempt:
    """One Optuna trial as the sweep reads it."""

    number: int
    trial_id: int
    name: str
    status: str
    attrs: dict[str, Any]
    params: dict[str, Any]

    @property
    def live(self) -> bool:
        return self.status == "running"


def default_storage(out_dir: Path) -> str:
    return f"sqlite:///{(out_dir / 'study.db').resolve()}"


def _import_optuna():
    try:
        import optuna
    except ImportError as e:
        raise LMError("lm-sweep needs Optuna: pip install 'cs336_lm[sweep]' (or pip install optuna)") from e
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


def connect(url: str):
    """Optuna's RDB storage at ``url``, with heartbeats; a database that cannot be reached is one ``LMError``."""
    optuna = _import_optuna()
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        engine_kwargs = {"connect_args": {"timeout": 120}}  # several processes wait for SQLite's write lock
    elif url.startswith("postgresql"):
        engine_kwargs = {"connect_args": {"connect_timeout": 10}}
    try:
        return _retrying(
            lambda: optuna.storages.RDBStorage(
                _with_driver(url), engine_kwargs=engine_kwargs, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S
            )
        )
    except Exception as e:  # SQLAlchemy's OperationalError, ArgumentError, a missing driver: one line each
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise LMError(f"cannot open the study database {_redact(url)}: {reason}") from None


def _retrying(make: Any, tries: int = 6) -> Any:
    """``make()``, again after a pause when it lost a race with another process creating the same tables or study
    (an IntegrityError, SQLite's "database is locked"); any other error at once."""
    for attempt in range(tries):
        try:
            return make()
        except Exception as e:
            text = f"{type(e).__name__} {e}"
            if attempt == tries - 1 or not ("IntegrityError" in text or "locked" in text or "Duplicated" in text):
                raise
            time.sleep(0.3 * (attempt + 1))
    raise AssertionError("unreachable")


@contextlib.contextmanager
def database_errors(url: str) -> Iterator[None]:
    """The study database failing mid-sweep (a server gone, a disk full under SQLite) as one ``LMError`` line."""
    try:
        yield
    except Exception as e:
        if type(e).__module__.split(".")[0] not in ("optuna", "sqlalchemy", "psycopg2", "psycopg", "sqlite3"):
            raise
        text = str(e).strip()
        reason = text.splitlines()[0] if text else type(e).__name__
        cause = e.__cause__ or e.__context__
        if cause is not None and str(cause).strip():
            reason = f"{reason} ({str(cause).strip().splitlines()[0]})"
        raise LMError(f"the study database {_redact(url)} failed: {reason}") from None


def _with_driver(url: str) -> str:
    """``postgresql://…`` with the PostgreSQL driver that is installed: SQLAlchemy 2.1 means psycopg 3 by it, and
    many installs have psycopg2 (``postgresql+psycopg2://…``) instead. A URL naming its driver is left alone."""
    if not url.startswith("postgresql://"):
        return url
    import importlib.util

    if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2") is not None:
        return "postgresql+psycopg2://" + url[len("postgresql://") :]
    return url


def _redact(url: str) -> str:
    """``postgresql://user:secret@host/db`` → ``postgresql://user:***@host/db``."""
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if not at or ":" not in creds:
        return url
    return f"{scheme}{sep}{creds.split(':', 1)[0]}:***@{host}"


class SweepStudy:
    """The Optuna study of one sweep; see the module docstring."""

    def __init__(self, study: Any, plan: SweepPlan, storage: Any):
        self.study, self.plan, self.storage = study, plan, storage
        self.study_id = storage.get_study_id_from_name(study.study_name)
        self.optuna = _import_optuna()

    @classmethod
    def open(
        cls, plan: SweepPlan, out_dir: Path, storage: str | None = None, name: str | None = None, prune: str = "none"
    ) -> SweepStudy:
        """Create or load the study ``name`` (default: the directory's name) and check it holds this plan;
        ``prune="median"`` stops a trial whose validation loss is worse than the median of the others' at that step
        (once two trials have finished)."""
        optuna = _import_optuna()
        url = storage or default_storage(out_dir)
        rdb = connect(url)
        study_name = name or out_dir.resolve().name
        sampler = optuna.samplers.RandomSampler() if plan.sampler == "random" else optuna.samplers.TPESampler()
        pruner = optuna.pruners.NopPruner()
        if prune == "median":  # from the third trial on, against the trials that reached the same step
            pruner = optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
        try:
            study = _retrying(
                lambda: optuna.create_study(
                    storage=rdb,
                    study_name=study_name,
                    direction="minimize",
                    sampler=sampler,
                    pruner=pruner,
                    load_if_exists=True,
                )
            )
        except Exception as e:
            raise LMError(f"cannot open study {study_name!r} in {_redact(url)}: {str(e).splitlines()[0]}") from None
        described = plan.describe()
        stored = study.user_attrs.get("sweep")
        if stored is None:
            study.set_user_attr("sweep", described)
        else:
            diff = difference(stored, described)
            if diff:
                raise ConfigError(
                    f"study {study_name!r} ({out_dir}) already holds a sweep with other settings ({diff}); "
                    "use another --out (or --study) for this one"
                )
        return cls(study, plan, rdb)

    # ---- reading ----------------------------------------------------------------------------------------------

    def attempts(self) -> list[Attempt]:
        """Every attempt, oldest first; RUNNING ones whose process is gone read as ``interrupted``."""
        result = []
        stale = set(self._stale_ids())
        for t in self.storage.get_all_trials(self.study_id, deepcopy=False):
            attrs = dict(t.user_attrs)
            status = attrs.get("status", "failed")
            if status == "running" and t.state.name != "RUNNING":
                status = "failed"
            if status == "running" and t._trial_id in stale:
                status = "interrupted"
            name = attrs.get("name", f"#{t.number}")
            result.append(Attempt(t.number, t._trial_id, name, status, attrs, dict(t.params)))
        return result

    def latest_by_name(self) -> dict[str, Attempt]:
        """Each trial's attempt that counts: a finished one if any, else a live one, else the newest."""
        best: dict[str, Attempt] = {}
        rank = {**dict.fromkeys(FINISHED, 3), "running": 2}
        for a in self.attempts():
            if a.status == "duplicate":
                continue
            held = best.get(a.name)
            if held is None or rank.get(a.status, 1) >= rank.get(held.status, 1):
                best[a.name] = a
        return best

    def _stale_ids(self) -> list[int]:
        """RUNNING attempts whose process is known dead (this host) or whose heartbeat is past the grace period."""
        ids = set()
        with contextlib.suppress(Exception):
            ids.update(self.storage._get_stale_trial_ids(self.study_id))
        host = socket.gethostname()
        for t in self.storage.get_all_trials(self.study_id, deepcopy=False, states=(self._state("RUNNING"),)):
            owner = t.user_attrs.get("owner") or {}
            if owner.get("host") == host and not _alive(owner.get("pid", -1)):
                ids.add(t._trial_id)
        return sorted(ids)

    def _state(self, name: str):
        return getattr(self.optuna.trial.TrialState, name)

    # ---- claiming and finishing ---------------------------------------------------------------------------

    def claim(self, trial: Trial) -> Attempt | None:
        """A RUNNING attempt at ``trial`` owned by this process, or None when it is finished or taken elsewhere."""
        self._retire_stale()
        frozen = self.optuna.trial.FrozenTrial(
            number=0,
            state=self._state("RUNNING"),
            value=None,
            datetime_start=None,
            datetime_complete=None,
            params={},
            distributions={},
            user_attrs={},
            system_attrs={},
            intermediate_values={},
            trial_id=0,
        )
        trial_id = self.storage.create_new_trial(self.study_id, template_trial=frozen)
        return self._adopt(trial_id, trial)

    def ask_new(self) -> tuple[Any, dict[str, Any]] | None:
        """A search's next point, drawn by the sampler: (Optuna trial, values), or None when the plan's ``--trials``
        points exist already (counted over every machine)."""
        self._retire_stale()
        if len({a.attrs.get("point") for a in self.latest_by_name().values()}) >= (self.plan.trials or 0):
            return None
        ot = self.study.ask()
        values: dict[str, Any] = {}
        for axis in self.plan.axes:
            if axis.kind in ("grid", "choice"):
                values[axis.key] = ot.suggest_categorical(axis.key, list(axis.values))
            elif axis.kind == "int":
                values[axis.key] = ot.suggest_int(axis.key, int(axis.low), int(axis.high))
            else:
                values[axis.key] = ot.suggest_float(axis.key, axis.low, axis.high, log=axis.kind == "loguniform")
        earlier = {a.attrs.get("point") for a in self.attempts() if a.number < ot.number and a.status != "duplicate"}
        if len(earlier - {None}) >= (self.plan.trials or 0):  # another process drew the last point first
            self._mark(ot._trial_id, "duplicate")
            self.study.tell(ot, state=self._state("FAIL"))
            return None
        return ot, values

    def adopt_drawn(self, ot: Any, trial: Trial) -> Attempt | None:
        """Give a drawn Optuna trial the plan's ``trial`` (its first seed)."""
        return self._adopt(ot._trial_id, trial)

    def _adopt(self, trial_id: int, trial: Trial) -> Attempt | None:
        attrs = {
            "name": trial.name,
            "point": trial.point,
            "seed_index": trial.seed_index,
            "values": json.dumps(trial.values),
            "overrides": list(trial.overrides),
            "owner": {"host": socket.gethostname(), "pid": os.getpid()},
            "status": "running",
        }
        for key, value in attrs.items():
            self.storage.set_trial_user_attr(trial_id, key, value)
        self.storage.record_heartbeat(trial_id)
        mine = next(a for a in self.attempts() if a.trial_id == trial_id)
        for other in self.attempts():
            if other.name != trial.name or other.trial_id == trial_id:
                continue
            if other.status in FINISHED or (other.live and other.number < mine.number):
                self.finish(mine, "duplicate")
                return None
        return mine

    def heartbeat(self, attempt: Attempt) -> None:
        with contextlib.suppress(Exception):  # a missed beat is harmless; the next one comes soon
            self.storage.record_heartbeat(attempt.trial_id)

    def finish(self, attempt: Attempt, status: str, metrics: dict[str, Any] | None = None, error: str = "") -> None:
        """Record how the attempt ended: its status, metrics and error line, and Optuna's state and value."""
        self._mark(attempt.trial_id, status, metrics, error)
        if status in ("done", "diverged"):
            best = (metrics or {}).get("best_val_loss")
            value = best if status == "done" and best is not None else float("inf")
            self.study.tell(attempt.number, value, skip_if_finished=True)
        else:
            state = "PRUNED" if status == "pruned" else "FAIL"
            self.study.tell(attempt.number, state=self._state(state), skip_if_finished=True)

    def _mark(self, trial_id: int, status: str, metrics: dict[str, Any] | None = None, error: str = "") -> None:
        self.storage.set_trial_user_attr(trial_id, "status", status)
        if metrics is not None:
            self.storage.set_trial_user_attr(trial_id, "metrics", metrics)
        if error:
            self.storage.set_trial_user_attr(trial_id, "error", error)

    def _retire_stale(self) -> None:
        """Mark the attempts of dead processes interrupted (FAIL in Optuna), so that their trials run again."""
        for trial_id in self._stale_ids():
            with contextlib.suppress(Exception):  # another process may retire it at the same moment
                self._mark(trial_id, "interrupted", error="its process stopped without finishing it")
                self.storage.set_trial_state_values(trial_id, state=self._state("FAIL"))

    def report(self, attempt: Attempt, step: int, val_loss: float) -> bool:
        """Report a validation loss to the pruner; True when it says to stop the trial."""
        ot = self.optuna.Trial(self.study, attempt.trial_id)
        ot.report(val_loss, step)
        return ot.should_prune()


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
