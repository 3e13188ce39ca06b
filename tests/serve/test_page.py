"""The page at ``/`` in a real browser: headless Chromium (Debian's ``chromium``, driven by Playwright) loads it,
types a prompt, clicks Generate, sees the model's text stream in, and clicks Stop, which aborts the request; on a
run with a chat template it opens in chat mode and holds a conversation over ``/v1/chat/completions``. And the
page is in the wheel, so an installed ``lm-serve`` has it.

``make browser`` (run by ``make test`` and so by CI) installs Chromium; without it this test is skipped, except
under CI (``CI`` set), where it fails.
"""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from cs336_lm.engine import Engine, SamplingParams
from cs336_lm.generation.chat_template import render_chat
from cs336_lm.tokenizer import Tokenizer

from .conftest import SPECIAL, LiveServer, SlowEngine

try:
    from playwright import sync_api
except ImportError:  # pragma: no cover - dev installs it
    sync_api = None

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PROMPT = "Once upon a time"
MAX_TOKENS = 480


class SlowerEngine(SlowEngine):
    delay = 0.02  # 480 tokens take 10 s or more: time enough to watch the text come in and click Stop


REPO = Path(__file__).resolve().parents[2]
TIMEOUT_MS = 30_000


@pytest.fixture
def browser_page(tmp_path):
    missing = None if sync_api is not None else "the playwright package (pip install -e '.[dev]')"
    if not Path(CHROMIUM).exists():
        missing = "chromium (`make browser` installs Debian's package)"
    if missing is not None:  # skipped on a developer's machine, a failure in CI, which must run it
        (pytest.fail if os.environ.get("CI") else pytest.skip)(f"the browser test needs {missing}")
    with sync_api.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True, args=FLAGS
        )
        try:
            page = context.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            yield page
        finally:
            context.close()


def text_of(page, element_id: str) -> str:
    return page.evaluate(f"document.getElementById({element_id!r}).textContent")


def test_the_page_streams_text_in_and_stop_aborts_the_request(browser_page, model, tokenizer):
    page = browser_page
    stop_ids = (tokenizer.special_token_ids[SPECIAL],)
    [greedy] = Engine(model, tokenizer=tokenizer).generate(
        [PROMPT], SamplingParams(max_new_tokens=MAX_TOKENS, temperature=0.0, stop_ids=stop_ids)
    )
    with LiveServer(SlowerEngine(model, tokenizer=tokenizer)) as live:
        page.goto(f"{live.url}/")
        page.wait_for_function("document.getElementById('model').textContent.includes('tiny · context 512')")
        assert page.is_hidden("#modes") and page.is_visible("#prompt")  # no chat template: no chat mode
        page.fill("#prompt", PROMPT)
        page.fill("#temperature", "0")
        page.fill("#max_tokens", str(MAX_TOKENS))
        page.click("#generate")

        page.wait_for_function("document.getElementById('completion').textContent.length > 0")
        assert page.is_enabled("#stop") and page.is_disabled("#generate")
        first = len(text_of(page, "completion"))
        page.wait_for_function(f"document.getElementById('completion').textContent.length > {first + 5}")
        assert page.is_enabled("#stop"), "the text should still be coming in"
        page.wait_for_function("document.getElementById('status').textContent.includes('tokens/s')")

        page.click("#stop")
        page.wait_for_function("document.getElementById('status').textContent.includes('stopped')")
        assert page.is_enabled("#generate") and page.is_disabled("#stop")
        shown = text_of(page, "completion")
        assert text_of(page, "shown-prompt") == PROMPT
        assert len(shown) > first + 5 and greedy.text.startswith(shown) and len(shown) < len(greedy.text)

        metrics = live.wait_idle()  # Stop closed the connection: the server aborted the request
        assert metrics['lm_requests_finished_total{reason="abort"}'] == 1
        assert metrics["lm_generation_tokens_total"] < MAX_TOKENS


def test_the_prompt_box_starts_with_text_and_an_emptied_one_is_not_sent(browser_page, model, tokenizer):
    page = browser_page
    with LiveServer(Engine(model, tokenizer=tokenizer)) as live:
        page.goto(f"{live.url}/")
        assert page.input_value("#prompt") == PROMPT  # a value to send, not a placeholder that looks like one
        page.fill("#prompt", "")
        page.click("#generate")
        page.wait_for_function("document.getElementById('status').textContent.includes('the prompt is empty')")
        assert page.is_enabled("#generate")
        assert not any(k.startswith('lm_http_requests_total{path="/v1/completions"') for k in live.metrics())


CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)


def test_chat_mode_holds_a_conversation_over_the_chat_endpoint(browser_page, model, tokenizer):
    page = browser_page
    tok = Tokenizer(tokenizer.vocab, tokenizer.merges, tokenizer.special_tokens, chat_template=CHAT_TEMPLATE)
    settings = SamplingParams(max_new_tokens=12, temperature=0.0, stop_ids=(tok.special_token_ids[SPECIAL],))

    def offline(messages):  # the greedy reply, rendered and generated without the server
        [reply] = Engine(model, tokenizer=tok).generate([tok.encode(render_chat(CHAT_TEMPLATE, messages))], settings)
        return reply.text

    replies = "Array.from(document.querySelectorAll('#thread .msg.assistant .content'), e => e.textContent)"
    with LiveServer(Engine(model, tokenizer=tok)) as live:
        page.goto(f"{live.url}/")
        page.wait_for_function("!document.getElementById('modes').hidden")
        assert page.is_checked("#mode-chat") and page.is_visible("#message") and page.is_hidden("#prompt")
        assert text_of(page, "generate") == "Send"
        page.fill("#system", "Be kind.")
        page.fill("#temperature", "0")
        page.fill("#max_tokens", "12")
        page.fill("#message", "Tell me a story.")
        page.click("#generate")
        page.wait_for_function("document.getElementById('status').textContent.includes('finished')")
        conversation = [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Tell me a story."}]
        assert page.evaluate(replies) == [offline(conversation)]
        assert page.input_value("#message") == ""

        page.fill("#message", "And then?")  # the second turn carries the first
        page.click("#generate")
        page.wait_for_function(
            "document.querySelectorAll('#thread .msg').length === 4 && "
            "document.getElementById('status').textContent.includes('finished')"
        )
        first = page.evaluate(replies)[0]
        conversation += [{"role": "assistant", "content": first}, {"role": "user", "content": "And then?"}]
        assert page.evaluate(replies) == [first, offline(conversation)]
        assert live.metrics()['lm_http_requests_total{path="/v1/chat/completions",status="200"}'] == 2

        page.click("#clear")
        assert page.evaluate("document.querySelectorAll('#thread .msg').length") == 0
        page.check("#mode-complete")
        assert page.is_visible("#prompt") and page.is_hidden("#message") and text_of(page, "generate") == "Generate"


def test_the_page_ships_in_the_wheel(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(REPO / "cs336_lm", src / "cs336_lm", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", str(src), "-w", "dist"]
    subprocess.run(cmd, cwd=tmp_path, check=True, capture_output=True, timeout=300)
    [wheel] = (tmp_path / "dist").glob("cs336_lm-*.whl")
    with zipfile.ZipFile(wheel) as z:
        page = z.read("cs336_lm/serve/static/index.html").decode()
    assert page == (REPO / "cs336_lm" / "serve" / "static" / "index.html").read_text(encoding="utf-8")
