"""``worker_pool``: an error ends the pool by letting its workers finish (never killing one mid-write), and the
tasks not yet begun return at once."""

import os
import time

import pytest

from cs336_lm.tokenizer.pretokenize import pool_cancelled, pool_context, worker_pool


def _task(job: tuple[int, str]) -> int:
    index, marks = job
    if index == 0:
        raise ValueError("task 0 fails")
    if pool_cancelled():
        return -1
    open(os.path.join(marks, f"{index}"), "w").close()  # this task did its work
    time.sleep(0.02)
    return index


def _square(x: int) -> int:
    return x * x


def test_an_error_skips_the_tasks_not_begun_and_the_pool_ends(tmp_path):
    jobs = [(i, str(tmp_path)) for i in range(400)]
    with pytest.raises(ValueError, match="task 0 fails"), worker_pool(pool_context(), 2) as pool:
        for _ in pool.imap(_task, jobs):  # in order: task 0's error is the first result
            pass
    assert len(os.listdir(tmp_path)) < 200, "the tasks after the error ran instead of returning"


def test_the_results_of_a_pool_that_ends_well():
    with worker_pool(pool_context(), 2) as pool:
        assert sorted(pool.imap_unordered(_square, range(50))) == [x * x for x in range(50)]
