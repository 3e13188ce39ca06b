"""The bridge between HTTP requests and the engine: one thread steps the engine, queues carry work in and out.

The engine is not thread-safe, so exactly one thread, the engine thread of ``EngineLoop``, calls ``add_request``,
``step`` and ``abort``. Request handlers run on the server's asyncio event loop and never touch the engine:

- in: ``await loop.submit(requests)`` puts a command on a ``queue.SimpleQueue`` and awaits a
  ``concurrent.futures.Future`` the engine thread resolves once the requests are admitted (or refused: a full
  queue, a prompt the engine rejects). ``Submission.close()`` puts an abort command on the same queue.
- out: after every step the engine thread groups the step's events by submission and hands each its batch of
  ``Output`` with ``call_soon_threadsafe`` onto that submission's ``asyncio.Queue``; the handler awaits
  ``next_batch()``. One HTTP request with several prompts or ``n > 1`` is one submission of several engine
  requests; every output carries the index of its choice.

The thread blocks on the command queue while the engine is idle, and otherwise takes every pending command
before each step, so requests that arrive together join the same batch. ``begin_drain(grace)`` (shutdown) refuses
new work with 503 and, after ``grace`` seconds, aborts what still runs: each such submission gets a
``ServeError`` as its last item.

One request never takes the loop down. The engine ends a request whose sampling or decoding fails (or every request
of a step whose forward fails) with reason ``"error"``; its submission gets a 500 ``ServeError`` as its last item,
its other choices are aborted, and the loop serves on. A request that fails to be admitted for a reason other than
its settings gets a 500 the same way. Only when ``MAX_FAILED_FORWARDS`` forwards fail in a row (each failing a
different set of requests: the device is broken, not a request), or a step raises anyway (a bug), does every open
submission get a 503 and the loop stop; ``healthy`` turns False.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import queue
import threading
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass

from cs336_lm.engine import Engine, EngineStats, Event, SamplingParams
from cs336_lm.errors import GenerationError, ServeError
from cs336_lm.generation.logprobs import TokenLogprob
from cs336_lm.serve.metrics import Metrics

DEFAULT_MAX_QUEUE = 256
MAX_FAILED_FORWARDS = 3
_IDLE_WAIT_S = 1.0  # how often an idle engine thread wakes to look at a drain deadline

logger = logging.getLogger("cs336_lm.serve")


@dataclass(frozen=True)
class Output:
    """What one engine step did for one choice: ``text`` newly final, whether it made a token, why it ended
    (``stop_reason``: the stop string or id that ended a ``"stop"``); the token's ``logprob`` and the prompt's
    ``prompt_logprobs`` when the request asked (``Event``)."""

    index: int
    text: str
    token: bool
    finish_reason: str | None
    stop_reason: int | str | None = None
    logprob: TokenLogprob | None = None
    prompt_logprobs: list[TokenLogprob | None] | None = None


class Submission:
    """The asyncio side of one HTTP request's engine requests (made by ``EngineLoop.submit``)."""

    def __init__(self, owner: EngineLoop, count: int):
        self._owner = owner
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[list[Output] | ServeError] = asyncio.Queue()
        self.count = count
        self.unfinished = count
        self.request_ids: list[int] = []  # written and read by the engine thread only

    @property
    def done(self) -> bool:
        return self.unfinished == 0

    async def next_batch(self) -> list[Output]:
        """The outputs of the next step that concerned this submission; raises the ``ServeError`` that ended it."""
        item = await self._queue.get()
        if isinstance(item, ServeError):
            self.unfinished = 0
            raise item
        self.unfinished -= sum(out.finish_reason is not None for out in item)
        return item

    def close(self) -> None:
        """Abort whatever has not finished (the client went away, or the handler ended early); idempotent."""
        if self.unfinished:
            self.unfinished = 0
            self._owner._commands.put(("abort", self))

    def _deliver(self, item: list[Output] | ServeError) -> None:  # engine thread
        _deliver_all(self._loop, [(self, item)])


def _deliver_all(loop: asyncio.AbstractEventLoop, items: list[tuple[Submission, list[Output] | ServeError]]) -> None:
    """Put every submission's item on its queue with one wake-up of the event loop (called from the engine thread)."""

    def put_all() -> None:
        for submission, item in items:
            submission._queue.put_nowait(item)

    with contextlib.suppress(RuntimeError):  # the event loop is closed: nobody is listening any more
        loop.call_soon_threadsafe(put_all)


class EngineLoop:
    """Owns the engine and the thread that drives it (see the module docstring)."""

    def __init__(self, engine: Engine, *, max_queue: int = DEFAULT_MAX_QUEUE, metrics: Metrics | None = None):
        if max_queue < 1:
            raise ServeError(f"max_queue must be >= 1, got {max_queue}")
        self.engine = engine
        self.max_queue = max_queue
        self.metrics = metrics or Metrics()
        self.stats: EngineStats = engine.stats()  # the latest snapshot, replaced (never mutated) after each step
        self.draining = False
        self.failure: str | None = None
        self._commands: queue.SimpleQueue[tuple] = queue.SimpleQueue()
        self._routes: dict[int, tuple[Submission, int]] = {}  # engine request id -> (submission, choice index)
        self._deadline: float | None = None
        self._thread = threading.Thread(target=self._run, name="engine-loop", daemon=True)

    # ---- called from the event loop -------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Abort everything still running and end the thread."""
        if self._thread.is_alive():
            self._commands.put(("stop",))
            self._thread.join(timeout)

    @property
    def healthy(self) -> bool:
        return self._thread.is_alive() and self.failure is None

    def begin_drain(self, grace: float) -> None:
        """Refuse new work from now on; abort what still runs ``grace`` seconds from now."""
        self.draining = True
        self._commands.put(("drain", time.monotonic() + grace))

    async def submit(self, requests: Sequence[tuple[list[int], SamplingParams]]) -> Submission:
        """Admit ``requests`` (prompt ids, settings) as one submission, or raise why not (``ServeError`` 400/503,
        ``GenerationError`` for a request the engine refuses)."""
        if len(requests) > self.max_queue:
            raise ServeError(
                f"the request asks for {len(requests)} completions (prompts × n) but the server queues at most "
                f"{self.max_queue} (--max-queue)",
                400,
                param="n",
            )
        self._check_open()
        submission = Submission(self, len(requests))
        admitted: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._commands.put(("submit", submission, list(requests), admitted))
        waiter = asyncio.wrap_future(admitted)
        try:
            while True:  # wake now and then in case the engine thread died before it saw the command
                done, _ = await asyncio.wait([waiter], timeout=_IDLE_WAIT_S)
                if done:
                    waiter.result()
                    return submission
                self._check_open(draining_ok=True)
        except BaseException:  # cancelled (the client went away) or the engine is down: undo the admission
            waiter.cancel()
            submission.close()
            raise

    def _check_open(self, draining_ok: bool = False) -> None:
        if self.draining and not draining_ok:
            raise ServeError("the server is shutting down", 503, code="server_shutting_down")
        if not self.healthy:
            raise ServeError(f"the engine is not running ({self.failure or 'stopped'})", 503, code="engine_down")

    # ---- the engine thread ----------------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while self._serve_once():
                pass
        except Exception as e:  # a bug: report it, fail every open request, stop
            traceback.print_exc()
            self.failure = f"{type(e).__name__}: {e}"
        finally:
            error = ServeError(f"the engine stopped ({self.failure or 'shutdown'})", 503, code="engine_down")
            self._abort_all(error)
            self._refuse_pending(error)

    def _serve_once(self) -> bool:
        """Take the pending commands, run one step if there is work; False once told to stop."""
        if not self._take_commands(block=not self.engine.has_unfinished):
            return False
        if self._deadline is not None and time.monotonic() >= self._deadline and self._routes:
            self._abort_all(ServeError("the server shut down before the request finished", 503, code="shutdown"))
        if self.engine.has_unfinished:
            events = self.engine.step()
            self._publish()  # before the outputs go out: a client never sees older stats than its tokens
            self._dispatch(events)
            if self.engine.failed_forwards >= MAX_FAILED_FORWARDS:
                last = next((e.error for e in reversed(events) if e.error is not None), None)
                raise RuntimeError(f"{self.engine.failed_forwards} forwards failed in a row, the last with {last!r}")
        return True

    def _take_commands(self, block: bool) -> bool:
        while True:
            try:
                command = self._commands.get(timeout=_IDLE_WAIT_S) if block else self._commands.get_nowait()
            except queue.Empty:
                return True
            block = False
            kind = command[0]
            if kind == "stop":
                return False
            if kind == "submit":
                self._admit(*command[1:])
            elif kind == "abort":
                self._abort(command[1])
            elif kind == "drain":
                self._deadline = command[1]

    def _admit(
        self,
        submission: Submission,
        requests: list[tuple[list[int], SamplingParams]],
        admitted: concurrent.futures.Future,
    ) -> None:
        if not admitted.set_running_or_notify_cancel():
            return
        waiting = self.engine.stats().waiting
        if waiting + len(requests) > self.max_queue:
            admitted.set_exception(
                ServeError(
                    f"the queue is full ({waiting} requests wait for a place in the batch; --max-queue "
                    f"{self.max_queue}): try again later",
                    503,
                    code="queue_full",
                )
            )
            return
        ids: list[int] = []
        try:
            for prompt, params in requests:
                ids.append(self.engine.add_request(prompt, params))
        except Exception as e:  # a request the engine refuses (GenerationError: a 400), or a bug (a 500)
            for rid in ids:
                self.engine.abort(rid)
            if not isinstance(e, GenerationError):
                logger.error("admitting a request failed", exc_info=e)
                e = ServeError(f"admitting the request failed ({type(e).__name__}: {e})", 500, code="internal_error")
            admitted.set_exception(e)
            return
        submission.request_ids = ids
        for index, rid in enumerate(ids):
            self._routes[rid] = (submission, index)
        self.metrics.prompt_tokens += sum(len(prompt) for prompt, _ in requests)
        admitted.set_result(None)

    def _abort(self, submission: Submission) -> None:
        for rid in submission.request_ids:
            if self._routes.pop(rid, None) is not None:
                self.engine.abort(rid)
                self.metrics.finished["abort"] += 1

    def _dispatch(self, events: list[Event]) -> None:
        """Hand each submission its outputs of this step, in one batch; a failed one its error after them."""
        batches: dict[Submission, list[Output]] = {}
        failed: dict[Submission, ServeError] = {}
        for event in events:
            route = self._routes.get(event.request_id)
            if route is None:  # aborted: nobody waits for it
                continue
            submission, index = route
            if event.token is not None:
                self.metrics.generation_tokens += 1
            if event.finish_reason is not None:
                del self._routes[event.request_id]
                self.metrics.finished[event.finish_reason] += 1
            if event.error is not None:
                failed.setdefault(submission, self._failure(event.error))
                continue
            out = Output(index, event.text, event.token is not None, event.finish_reason, event.stop_reason,
                         event.logprob, event.prompt_logprobs)  # fmt: skip
            batches.setdefault(submission, []).append(out)
        items: list[tuple[Submission, list[Output] | ServeError]] = list(batches.items())
        for submission, error in failed.items():
            self._abort(submission)  # its other choices: the answer has failed
            items.append((submission, error))
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Submission, list[Output] | ServeError]]] = {}
        for submission, item in items:
            by_loop.setdefault(submission._loop, []).append((submission, item))
        for loop, loop_items in by_loop.items():
            _deliver_all(loop, loop_items)

    @staticmethod
    def _failure(error: Exception) -> ServeError:
        """The error a request's client gets when its generation failed (the server log has the traceback)."""
        logger.error("a request failed while generating", exc_info=error)
        return ServeError(f"generating the answer failed ({type(error).__name__}: {error})", 500,
                          code="generation_failed")  # fmt: skip

    def _publish(self) -> None:
        self.stats = stats = self.engine.stats()
        self.metrics.running_peak = max(self.metrics.running_peak, stats.running)

    def _abort_all(self, error: ServeError) -> None:
        """Abort every open request and give its submission ``error`` as its last item."""
        submissions = {sub for sub, _ in self._routes.values()}
        for submission in submissions:
            self._abort(submission)
        self._publish()
        for submission in submissions:
            submission._deliver(error)

    def _refuse_pending(self, error: ServeError) -> None:
        """Fail the admissions still in the command queue (the thread is ending)."""
        while True:
            try:
                command = self._commands.get_nowait()
            except queue.Empty:
                break
            if command[0] == "submit" and command[3].set_running_or_notify_cancel():
                command[3].set_exception(error)
