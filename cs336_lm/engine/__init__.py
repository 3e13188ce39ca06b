"""The inference engine: continuous batching over a paged KV cache, on the model's own forward.

>>> from cs336_lm.engine import Engine, SamplingParams
>>> engine = Engine(model, block_size=16, max_batch_tokens=512, max_kv_tokens=8192, tokenizer=tok)
>>> rid = engine.add_request(tok.encode("Once upon a time"), SamplingParams(temperature=0.8, max_new_tokens=64))
>>> while engine.has_unfinished:
...     for event in engine.step():      # Event(request_id, token, finish_reason, text)
...         print(event.text, end="")
>>> engine.generate(["Once", "Hello"], SamplingParams(max_new_tokens=20))   # a Completion per prompt
>>> engine.generate([ids], SamplingParams(max_new_tokens=0, prompt_logprobs=1))[0].prompt_logprobs  # scores

>>> for token in generate(model, tok.encode("Once upon"), 50, temperature=0.8, seed=0): ...   # one prompt, streamed
>>> complete(model, [ids_a, ids_b], 20, temperature=0)                 # many prompts, a Completion each

Modules: ``params`` (SamplingParams), ``blocks`` (block manager and prefix cache), ``scheduler`` (continuous
batching, preemption), ``runner`` (step packing, the forward over the KV pool of ``cs336_lm.nn.paged``, CUDA-graph
replay), ``text`` (stop strings), ``events`` (what a step reports), ``engine`` (the API), ``decode`` (``generate``
and ``complete`` on an engine of their own). docs/engine.md describes them for users.
"""

from cs336_lm.engine.decode import complete, generate
from cs336_lm.engine.engine import Engine
from cs336_lm.engine.events import EngineStats, Event
from cs336_lm.engine.params import SamplingParams
from cs336_lm.generation.completion import Completion
from cs336_lm.generation.logprobs import TokenLogprob

__all__ = ["Completion", "Engine", "EngineStats", "Event", "SamplingParams", "TokenLogprob", "complete", "generate"]
