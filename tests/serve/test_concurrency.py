"""Many clients at once, clients that leave, and a server that shuts down while requests run.

Every load here stays on loopback with a fixed number of requests and a time limit on each."""

import json
import random
import threading
import time

import httpx
import openai

from cs336_lm.engine import Engine, SamplingParams

from .conftest import MODEL_NAME, SPECIAL, LiveServer, SlowEngine

CLIENTS = 32


def test_32_concurrent_streams_all_complete_equal_offline_and_share_the_batch(model, tokenizer):
    rng = random.Random(3)
    prompts = ["".join(rng.choice("abcdefgh ") for _ in range(rng.randint(3, 40))) for _ in range(CLIENTS)]
    settings = [
        {"max_tokens": rng.randint(16, 40), "temperature": [0.0, 0.9, 1.2][i % 3], "seed": 1000 + i}
        for i in range(CLIENTS)
    ]
    stop_ids = (tokenizer.special_token_ids[SPECIAL],)
    params = [
        SamplingParams(max_new_tokens=s["max_tokens"], temperature=s["temperature"], seed=s["seed"], stop_ids=stop_ids)
        for s in settings
    ]
    expected = Engine(model, tokenizer=tokenizer).generate(prompts, params)
    texts: list[str | None] = [None] * CLIENTS
    reasons: list[str | None] = [None] * CLIENTS
    start = threading.Barrier(CLIENTS)

    with LiveServer(Engine(model, tokenizer=tokenizer)) as live:
        client = openai.OpenAI(base_url=f"{live.url}/v1", api_key="unused", max_retries=0, timeout=60)

        def run(i: int) -> None:
            start.wait(timeout=30)
            stream = client.completions.create(model=MODEL_NAME, prompt=prompts[i], stream=True, **settings[i])
            pieces = []
            for chunk in stream:
                pieces.append(chunk.choices[0].text)
                reasons[i] = chunk.choices[0].finish_reason
            texts[i] = "".join(pieces)

        threads = [threading.Thread(target=run, args=(i,)) for i in range(CLIENTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not any(t.is_alive() for t in threads)
        metrics = live.wait_idle()
        client.close()

    assert texts == [e.text for e in expected]
    assert reasons == [{"context": "length"}.get(e.finish_reason, e.finish_reason) for e in expected]
    assert metrics["lm_requests_running_peak"] > 1, "the requests ran one after another, not in one batch"
    assert metrics['lm_http_requests_total{path="/v1/completions",status="200"}'] == CLIENTS
    assert metrics["lm_generation_tokens_total"] == sum(len(e.tokens) for e in expected)


def finished(metrics: dict[str, float], reason: str) -> float:
    return metrics.get(f'lm_requests_finished_total{{reason="{reason}"}}', 0.0)


def test_a_client_that_disconnects_mid_stream_has_its_request_aborted_and_blocks_freed(model, tokenizer):
    with LiveServer(SlowEngine(model, tokenizer=tokenizer)) as live:
        body = {"prompt": "Hello", "max_tokens": 400, "temperature": 0, "stream": True}
        with httpx.Client(timeout=30) as http, http.stream("POST", f"{live.url}/v1/completions", json=body) as r:
            lines = r.iter_lines()
            first = next(line for line in lines if line.startswith("data: "))
            assert json.loads(first[6:])["choices"][0]["finish_reason"] is None
            assert live.metrics()["lm_kv_blocks_used"] > 0
        # leaving the block closed the connection mid-stream
        metrics = live.wait_idle()
        assert finished(metrics, "abort") == 1 and finished(metrics, "length") == 0
        assert metrics["lm_generation_tokens_total"] < 400
        assert httpx.get(f"{live.url}/health").status_code == 200


def test_a_client_that_gives_up_on_a_whole_answer_has_its_request_aborted(model, tokenizer):
    with LiveServer(SlowEngine(model, tokenizer=tokenizer)) as live:
        body = {"prompt": "Hello", "max_tokens": 400, "temperature": 0}
        try:
            httpx.post(f"{live.url}/v1/completions", json=body, timeout=0.5)
            raise AssertionError("the answer came before the client gave up")
        except httpx.ReadTimeout:
            pass
        metrics = live.wait_idle(timeout=10)  # the server looks for a gone client once a second
        assert finished(metrics, "abort") == 1 and metrics["lm_generation_tokens_total"] < 400


def test_shutdown_lets_short_requests_finish_and_ends_long_ones_with_an_error_event(model, tokenizer):
    live = LiveServer(SlowEngine(model, tokenizer=tokenizer))  # its drain grace is 2 s
    events: dict[str, list] = {"short": [], "long": []}

    def stream(name: str, max_tokens: int, ready: threading.Event) -> None:
        body = {"prompt": "Hi", "max_tokens": max_tokens, "temperature": 0, "stream": True}
        with httpx.stream("POST", f"{live.url}/v1/completions", json=body, timeout=30) as r:
            for line in r.iter_lines():
                if line.startswith("data: "):
                    events[name].append(line[6:])
                    ready.set()

    with live:
        readies = {name: threading.Event() for name in events}
        threads = [
            threading.Thread(target=stream, args=("short", 30, readies["short"])),
            threading.Thread(target=stream, args=("long", 500, readies["long"])),
        ]
        for t in threads:
            t.start()
        assert all(r.wait(30) for r in readies.values())
        started = time.monotonic()
        live.server.should_exit = True  # what SIGTERM does
        for t in threads:
            t.join(30)
    assert time.monotonic() - started < 10
    short, long = events["short"], events["long"]
    assert short[-1] == "[DONE]" and json.loads(short[-2])["choices"][0]["finish_reason"] == "length"
    assert long[-1] == "[DONE]" and json.loads(long[-2])["error"]["code"] == "shutdown"
    assert len(long) < 500


def test_a_full_queue_answers_503_and_the_server_goes_on(model, tokenizer):
    engine = SlowEngine(model, tokenizer=tokenizer, max_num_seqs=1)  # one request runs, the next waits
    with LiveServer(engine, max_queue=1) as live, httpx.Client(base_url=live.url, timeout=30) as http:
        body = {"prompt": "Hi", "max_tokens": 300, "temperature": 0, "stream": True}
        with http.stream("POST", "/v1/completions", json=body) as running:
            lines = running.iter_lines()  # kept: dropping the iterator would close the connection
            next(lines)
            with http.stream("POST", "/v1/completions", json=body) as waiting:
                assert waiting.status_code == 200
                deadline = time.monotonic() + 10
                while live.metrics()["lm_requests_waiting"] < 1:
                    assert time.monotonic() < deadline
                    time.sleep(0.02)
                refused = http.post("/v1/completions", json={"prompt": "Hi", "max_tokens": 2})
                assert refused.status_code == 503
                error = refused.json()["error"]
                assert error["code"] == "queue_full" and error["type"] == "server_error"
                assert http.get("/health").status_code == 200
        live.wait_idle()
        assert http.post("/v1/completions", json={"prompt": "Hi", "max_tokens": 2}).status_code == 200
