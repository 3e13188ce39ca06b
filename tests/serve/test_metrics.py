"""``/metrics`` read by Prometheus' own parser (``prometheus_client``), and its counters against what was served."""

import httpx
import pytest

from cs336_lm.serve.metrics import Metrics

parser = pytest.importorskip("prometheus_client.parser")


def families(text: str) -> dict:
    return {f.name: f for f in parser.text_string_to_metric_families(text)}


def value(fams: dict, name: str, **labels) -> float:
    family = fams[name.removesuffix("_total")] if name.endswith("_total") else fams[name]
    for sample in family.samples:
        if sample.name == name and sample.labels == labels:
            return sample.value
    return 0.0


def test_the_exposition_parses_and_has_every_family(server):
    r = httpx.get(f"{server.url}/metrics")
    assert r.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    fams = families(r.text)
    expected = {
        "lm_info": "gauge",
        "lm_http_requests": "counter",
        "lm_requests_finished": "counter",
        "lm_prompt_tokens": "counter",
        "lm_generation_tokens": "counter",
        "lm_requests_running": "gauge",
        "lm_requests_waiting": "gauge",
        "lm_requests_running_peak": "gauge",
        "lm_kv_blocks_used": "gauge",
        "lm_kv_blocks_capacity": "gauge",
        "lm_preemptions": "counter",
        "lm_engine_steps": "counter",
    }
    assert {name: fams[name].type for name in expected} == expected
    assert value(fams, "lm_info", model="tiny") == 1


def test_counters_move_by_what_a_request_used(server, tokenizer):
    before = families(httpx.get(f"{server.url}/metrics").text)
    prompt = "Hello there"
    answer = httpx.post(
        f"{server.url}/v1/completions", json={"prompt": prompt, "n": 2, "max_tokens": 9, "temperature": 0}, timeout=30
    ).json()
    server.wait_idle()
    after = families(httpx.get(f"{server.url}/metrics").text)
    grew = lambda name, **labels: value(after, name, **labels) - value(before, name, **labels)
    assert grew("lm_generation_tokens_total") == answer["usage"]["completion_tokens"]
    assert grew("lm_prompt_tokens_total") == 2 * len(tokenizer.encode(prompt))  # each choice counts its prompt
    assert grew("lm_http_requests_total", path="/v1/completions", status="200") == 1
    assert grew("lm_requests_finished_total", reason="length") + grew("lm_requests_finished_total", reason="stop") == 2
    assert grew("lm_engine_steps_total") >= 9
    assert value(after, "lm_kv_blocks_used") == 0 and value(after, "lm_kv_blocks_capacity") > 0


def test_label_values_are_escaped():
    from cs336_lm.engine import EngineStats

    stats = EngineStats(0, 0, 0, 10, 16, 0, 0, 0, 0)
    text = Metrics().render(stats, model='a "quoted"\\name\n')
    assert value(families(text), "lm_info", model='a "quoted"\\name\n') == 1
