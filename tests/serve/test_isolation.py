"""One request never takes the server down: a setting that cannot be sampled is a 400 before it reaches the engine,
and whatever still fails in one request's sampling, its admission or a step's forward fails those requests alone
(500 for a whole answer, an error event then ``[DONE]`` for a stream) while the others are served and ``/health``
stays 200."""

import json
import threading

import httpx
import pytest

from cs336_lm.engine import Engine, SamplingParams
from cs336_lm.serve.loop import MAX_FAILED_FORWARDS

from .conftest import SPECIAL, LiveServer, SlowEngine

FAIL_SEED = 666  # requests with this seed fail in FailingEngine


class FailingEngine(SlowEngine):
    """Sampling raises for a request seeded ``FAIL_SEED`` at its third token."""

    @staticmethod
    def _next_token(row, seq, best, nan):
        if seq.params.seed == FAIL_SEED and len(seq.output) == 2:
            raise RuntimeError("injected sampling failure")
        return Engine._next_token(row, seq, best, nan)


class FlakyForwardEngine(SlowEngine):
    """The next ``failures`` forwards raise, as an out-of-memory error would."""

    failures = 0

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        forward = self.runner.forward

        def flaky(chunks):
            if self.failures:
                self.failures -= 1
                raise RuntimeError("injected: out of memory")
            return forward(chunks)

        self.runner.forward = flaky


class RefusingEngine(Engine):
    """``add_request`` fails with a bug (not a ``GenerationError``) for the prompt ``[7, 7, 7]``."""

    def add_request(self, prompt_ids, params=None):
        if list(prompt_ids) == [7, 7, 7]:
            raise RuntimeError("injected admission failure")
        return super().add_request(prompt_ids, params)


def health(live: LiveServer) -> int:
    return httpx.get(f"{live.url}/health", timeout=10).status_code


def finished(live: LiveServer, reason: str) -> float:
    return live.metrics().get(f'lm_requests_finished_total{{reason="{reason}"}}', 0.0)


def assert_error(r: httpx.Response, status: int, code: str) -> dict:
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and "Traceback" not in error["message"]
    assert error["code"] == code and error["type"] == ("server_error" if status >= 500 else "invalid_request_error")
    return error


@pytest.mark.parametrize("penalty", [1e-300, 1e-39])
def test_a_repetition_penalty_that_overflows_float32_is_a_400_and_the_server_stays_up(server, penalty):
    # before the bound, 1e-39 (subnormal in float32) made an infinite logit, torch.multinomial raised on the engine
    # thread, and every later request got 503 engine_down
    body = {"prompt": "Once upon", "max_tokens": 5, "repetition_penalty": penalty}
    r = httpx.post(f"{server.url}/v1/completions", json=body, timeout=30)
    error = assert_error(r, 400, "invalid_value")
    assert error["param"] == "repetition_penalty" and "0.01" in error["message"]
    assert health(server) == 200
    body["repetition_penalty"] = 1.2
    assert httpx.post(f"{server.url}/v1/completions", json=body, timeout=30).status_code == 200


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_a_sampling_failure_fails_its_request_alone_while_another_completes(model, tokenizer, stream):
    stop_ids = (tokenizer.special_token_ids[SPECIAL],)
    [expected] = Engine(model, tokenizer=tokenizer).generate(
        ["Hello"], SamplingParams(max_new_tokens=60, temperature=0, stop_ids=stop_ids)
    )
    with LiveServer(FailingEngine(model, tokenizer=tokenizer)) as live, httpx.Client(timeout=30) as http:
        other = {"prompt": "Hello", "max_tokens": 60, "temperature": 0, "stream": True}
        failing = {"prompt": "Once", "max_tokens": 60, "temperature": 0.8, "seed": FAIL_SEED, "stream": stream}
        with http.stream("POST", f"{live.url}/v1/completions", json=other) as running:
            lines = running.iter_lines()
            first = next(line for line in lines if line.startswith("data: "))  # it runs: now the failing one
            r = http.post(f"{live.url}/v1/completions", json=failing)
            if stream:
                events = [line[6:] for line in r.text.splitlines() if line.startswith("data: ")]
                assert r.status_code == 200 and events[-1] == "[DONE]"
                error = json.loads(events[-2])["error"]
                assert error["code"] == "generation_failed" and "injected sampling failure" in error["message"]
                assert all(json.loads(e)["choices"][0]["finish_reason"] is None for e in events[:-2])  # its text
            else:
                error = assert_error(r, 500, "generation_failed")
                assert "RuntimeError: injected sampling failure" in error["message"]
            assert health(live) == 200
            rest = [line for line in lines if line.startswith("data: ")]
        chunks = [json.loads(line[6:]) for line in [first, *rest] if line != "data: [DONE]"]
        assert rest[-1] == "data: [DONE]" and not any("error" in c for c in chunks)
        assert "".join(c["choices"][0]["text"] for c in chunks) == expected.text
        assert chunks[-1]["choices"][0]["finish_reason"] == {"context": "length"}.get(
            expected.finish_reason, expected.finish_reason
        )
        live.wait_idle()  # the failed request's blocks went back too
        assert finished(live, "error") == 1 and live.metrics()["lm_requests_running_peak"] == 2
        assert httpx.post(f"{live.url}/v1/completions", json={**failing, "seed": 1}, timeout=30).status_code == 200


def test_one_failed_choice_fails_the_answer_and_aborts_its_other_choices(model, tokenizer):
    with LiveServer(FailingEngine(model, tokenizer=tokenizer)) as live:
        body = {"prompt": "Once", "n": 3, "max_tokens": 200, "temperature": 0.8, "seed": FAIL_SEED}
        r = httpx.post(f"{live.url}/v1/completions", json=body, timeout=30)
        assert_error(r, 500, "generation_failed")  # choice 0 failed; choices 1 and 2 (seeds 667, 668) would run on
        metrics = live.wait_idle()
        assert finished(live, "error") == 1 and finished(live, "abort") == 2 and finished(live, "length") == 0
        assert metrics["lm_generation_tokens_total"] < 20 and health(live) == 200


def test_a_failed_forward_fails_the_requests_of_its_step_and_the_server_goes_on(model, tokenizer):
    engine = FlakyForwardEngine(model, tokenizer=tokenizer)
    with LiveServer(engine) as live, httpx.Client(base_url=live.url, timeout=30) as http:
        body = {"prompt": "Once", "max_tokens": 5}
        engine.failures = 1
        error = assert_error(http.post("/v1/completions", json=body), 500, "generation_failed")
        assert "out of memory" in error["message"]
        assert health(live) == 200 and live.wait_idle()["lm_kv_blocks_used"] == 0
        assert http.post("/v1/completions", json=body).status_code == 200
        assert engine.failed_forwards == 0


def test_forwards_failing_again_and_again_turn_the_server_unhealthy(model, tokenizer, capsys):
    # each failed forward fails different requests: after MAX_FAILED_FORWARDS in a row the device is at fault
    engine = FlakyForwardEngine(model, tokenizer=tokenizer)
    engine.failures = 10**6
    with LiveServer(engine) as live, httpx.Client(base_url=live.url, timeout=30) as http:
        for _ in range(MAX_FAILED_FORWARDS):
            assert_error(http.post("/v1/completions", json={"prompt": "a", "max_tokens": 3}), 500, "generation_failed")
        assert_error(http.post("/v1/completions", json={"prompt": "a"}), 503, "engine_down")
        assert health(live) == 503
    assert "forwards failed in a row" in capsys.readouterr().err


def test_a_request_that_fails_to_be_admitted_fails_alone(model, tokenizer):
    with LiveServer(RefusingEngine(model, tokenizer=tokenizer)) as live, httpx.Client(timeout=30) as http:
        url = f"{live.url}/v1/completions"
        results: list[int] = []
        good = threading.Thread(target=lambda: results.append(http.post(url, json={"prompt": "ab"}).status_code))
        good.start()
        error = assert_error(http.post(url, json={"prompt": [7, 7, 7]}), 500, "internal_error")
        assert "injected admission failure" in error["message"]
        good.join(30)
        assert results == [200] and health(live) == 200
        assert http.post(url, json={"prompt": [7, 7]}).status_code == 200
