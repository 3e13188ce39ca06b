"""``lm-serve``: an OpenAI-compatible HTTP server on the engine, and a page to try a model in a browser.

>>> from cs336_lm.serve import create_app, make_server, listen
>>> app = create_app(Engine(model, tokenizer=tok), model_name="demo", api_key=None)
>>> make_server(app).run(sockets=[listen("127.0.0.1", 8000)])

Modules, from the wire inwards: ``protocol`` (the OpenAI request schema and response bodies), ``http_errors``
(every failure as an OpenAI error body), ``middleware`` (request counting, API key, body-size limit), ``app``
(the routes), ``completions`` (a request → engine requests → the answer, whole or as server-sent events),
``chat_protocol`` and ``chat`` (``/v1/chat/completions``: a conversation → its template's prompt → completions),
``loop`` (the one thread that steps the engine, and the queues to and from it), ``metrics`` (Prometheus text),
``server`` (uvicorn with a draining shutdown), ``static/index.html`` (the page). docs/serving.md is the guide.
"""

from cs336_lm.serve.app import create_app
from cs336_lm.serve.loop import EngineLoop
from cs336_lm.serve.server import Server, listen, make_server

__all__ = ["EngineLoop", "Server", "create_app", "listen", "make_server"]
