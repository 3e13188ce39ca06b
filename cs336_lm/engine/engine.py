"""The engine: requests in, tokens out, many sequences decoded together over a paged KV cache.

``Engine(model)`` owns a model runner (``runner``: the pool of KV blocks and the forward over it), a block manager
with a prefix cache (``blocks``) and a continuous-batching scheduler (``scheduler``). ``add_request`` queues a
prompt; every ``step`` runs one forward of the model over the tokens the scheduler packed — prompt chunks of new
requests beside one token of each running one — samples the next token of every sequence whose known tokens are
all computed, and reports an ``Event`` per such sequence. A request ends at its ``max_new_tokens``, a stop id, a
stop string or the end of the model's context, or when it is aborted, and its blocks go back to the pool at once.
``generate`` does all of that for a list of prompts and returns their completions. On CUDA, decode-only steps
replay CUDA graphs captured for common batch sizes (``runner``).

One request's failure is its own: when sampling or decoding a sequence raises (or its logits are NaN), that
request ends with reason ``"error"`` and the exception in its event, and the step goes on for the others. When
the forward itself raises (out of memory, a failed kernel), every request of that step ends with ``"error"`` —
they are the ones it was computing; their blocks are freed and the requests not in that step go on.
``failed_forwards`` counts such steps in a row: a caller that sees it grow over several steps (which fail
disjoint sets of requests) knows the device, not a request, is at fault.
"""

from __future__ import annotations

import math
from collections.abc import Sequence as Seq

import torch
from tqdm import tqdm

from cs336_lm.engine.blocks import BlockManager
from cs336_lm.engine.events import EngineStats, Event
from cs336_lm.engine.params import SamplingParams
from cs336_lm.engine.runner import ModelRunner
from cs336_lm.engine.scheduler import Scheduler
from cs336_lm.engine.sequence import Sequence, Status
from cs336_lm.engine.text import StopText
from cs336_lm.errors import GenerationError, LMError
from cs336_lm.generation.completion import Completion, check_prompt
from cs336_lm.generation.logprobs import TokenLogprob, token_logprobs
from cs336_lm.generation.sampling import apply_repetition_penalty, sample_next
from cs336_lm.nn import TransformerLM
from cs336_lm.nn.accounting import kv_cache_bytes_per_token
from cs336_lm.tokenizer import Tokenizer

DEFAULT_MAX_BATCH_TOKENS = 512
DEFAULT_MAX_NUM_SEQS = 256


class Engine:
    """Continuous batching over a paged KV cache (see the module docstring).

    ``max_kv_tokens`` bounds the pool (default: 32 full-context sequences; ``max_kv_bytes`` sets it in bytes
    instead); ``max_batch_tokens`` bounds the tokens of one forward (prompt chunks plus one per decoding
    sequence); ``max_num_seqs`` the sequences running at once. ``tokenizer`` decodes text for stop strings
    and ``Event.text``. ``cuda_graphs`` ("auto": on CUDA with the Triton kernels) replays captured decode steps.
    """

    def __init__(
        self,
        model: TransformerLM,
        *,
        block_size: int = 16,
        max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS,
        max_kv_tokens: int | None = None,
        max_kv_bytes: int | None = None,
        max_num_seqs: int = DEFAULT_MAX_NUM_SEQS,
        tokenizer: Tokenizer | None = None,
        cuda_graphs: bool | str = "auto",
    ):
        for name, value in (("block_size", block_size), ("max_batch_tokens", max_batch_tokens)):
            _check_positive(name, value)
        _check_positive("max_num_seqs", max_num_seqs)
        self.model = model.eval()
        self.tokenizer = tokenizer
        tokens = self._pool_tokens(model, max_kv_tokens, max_kv_bytes)
        num_blocks = 1 + math.ceil(tokens / block_size)  # + the sink block
        self.runner = ModelRunner(model, num_blocks, block_size, cuda_graphs=cuda_graphs, max_num_seqs=max_num_seqs)
        self.cache = self.runner.cache
        self.blocks = BlockManager(num_blocks, block_size)
        self.scheduler = Scheduler(self.blocks, max_batch_tokens, max_num_seqs)
        self.requests: dict[int, Sequence] = {}
        self._next_id = 0
        self._ended: list[Event] = []  # requests that ended between steps: reported by the next one
        self.failed_forwards = 0
        """Steps in a row whose forward raised (0 after one that did not)."""

    @staticmethod
    def _pool_tokens(model: TransformerLM, max_kv_tokens: int | None, max_kv_bytes: int | None) -> int:
        if max_kv_tokens is not None and max_kv_bytes is not None:
            raise GenerationError("give max_kv_tokens or max_kv_bytes, not both")
        if max_kv_bytes is not None:
            _check_positive("max_kv_bytes", max_kv_bytes)
            per_token = kv_cache_bytes_per_token(model.args, model.lm_head.weight.element_size())
            return max(1, max_kv_bytes // per_token)
        if max_kv_tokens is None:
            return 32 * model.context_length
        _check_positive("max_kv_tokens", max_kv_tokens)
        return max_kv_tokens

    # ---- requests -------------------------------------------------------------------------------------------

    def add_request(self, prompt_ids: Seq[int] | str, params: SamplingParams | None = None) -> int:
        """Queue a prompt (token ids, or text when the engine has a tokenizer); returns its request id."""
        params = SamplingParams() if params is None else params
        prompt = self._prompt_ids(prompt_ids, generates=params.max_new_tokens > 0)
        ctx = self.model.context_length
        max_len = min(ctx, len(prompt) + params.max_new_tokens)
        if math.ceil(max_len / self.blocks.block_size) > self.blocks.capacity:
            capacity = self.blocks.capacity * self.blocks.block_size
            raise GenerationError(f"the request needs up to {max_len} tokens of KV cache; the pool holds {capacity}")
        if params.stop and self.tokenizer is None:
            raise GenerationError("stop strings need the engine's tokenizer (Engine(model, tokenizer=...))")
        rid = self._next_id
        self._next_id += 1
        seq = Sequence(rid, list(prompt), len(prompt), params, self._generator(params.seed), max_len)
        if self.tokenizer is not None:
            seq.text = StopText(self.tokenizer.vocab, params.stop)
        if params.max_new_tokens == 0 and not params.scores_only:  # nothing to do: it ends at the next step
            seq.status, seq.finish_reason = Status.FINISHED, "length"
            self._ended.append(Event(rid, None, "length"))
            return rid
        self.requests[rid] = seq
        self.scheduler.add(seq)
        return rid

    def abort(self, request_id: int) -> None:
        """End a request now and free its blocks; its final event (reason ``"abort"``) comes with the next step."""
        seq = self.requests.pop(request_id, None)
        if seq is None or seq.status is Status.FINISHED:
            return
        self.scheduler.finish(seq, "abort")
        self._ended.append(Event(request_id, None, "abort"))

    @property
    def has_unfinished(self) -> bool:
        return self.scheduler.has_work or bool(self._ended)

    def _prompt_ids(self, prompt: Seq[int] | str, generates: bool = True) -> list[int]:
        if isinstance(prompt, str):
            if self.tokenizer is None:
                raise GenerationError("a text prompt needs the engine's tokenizer; give token ids instead")
            prompt = self.tokenizer.encode(prompt)
        return check_prompt(prompt, self.model.context_length, self.model.vocab_size, generates=generates)

    def _generator(self, seed: int | None) -> torch.Generator:
        generator = torch.Generator(device=self.cache.device)
        generator.manual_seed(int(torch.randint(0, 2**62, ())) if seed is None else seed)
        return generator

    # ---- one step -------------------------------------------------------------------------------------------

    def step(self) -> list[Event]:
        """Run one forward over the scheduled tokens; an event for every request that produced a token or ended.

        Never raises for one request's sake: a failure ends the requests it concerns with ``"error"`` (see the
        module docstring)."""
        events, self._ended = self._ended, []
        chunks = self.scheduler.schedule()
        if not chunks:
            return events
        try:
            logits, scored = self.runner.forward(chunks)  # (sampling sequences, vocab_size), prompt positions' rows
        except Exception as e:  # the whole step failed: its requests end, the engine goes on
            self.failed_forwards += 1
            return events + [self._fail(c.seq, e) for c in chunks]
        self.failed_forwards = 0
        self.scheduler.commit(chunks)
        for part, rows in scored:
            try:
                self._score_prompt(part.seq, part.positions, rows)
            except Exception as e:  # its log-softmax failed: it alone ends
                events.append(self._fail(part.seq, e))
        sampling = [c.seq for c in chunks if c.samples]
        if any(seq.status is Status.FINISHED or seq.params.scores_only for seq in sampling):
            events += [self._end(seq, None, "length", "") for seq in sampling if seq.status is not Status.FINISHED
                       and seq.params.scores_only]  # fmt: skip
            keep = [i for i, seq in enumerate(sampling) if seq.status is not Status.FINISHED]
            logits, sampling = logits[keep], [sampling[i] for i in keep]
        if not sampling:
            return events
        tokens = self._sample(logits, sampling)
        try:
            logprobs = self._logprobs(logits, sampling, tokens)
        except Exception as e:  # the requests that asked for them fail, the others go on
            logprobs = [None] * len(sampling)
            tokens = [e if seq.params.logprobs is not None else t for seq, t in zip(sampling, tokens, strict=True)]
        for seq, token, logprob in zip(sampling, tokens, logprobs, strict=True):
            if isinstance(token, Exception):
                events.append(self._fail(seq, token))
                continue
            try:
                events.append(self._advance(seq, token, logprob))
            except Exception as e:  # decoding its text failed: it alone ends
                events.append(self._fail(seq, e))
        return events

    @staticmethod
    def _score_prompt(seq: Sequence, positions: range, rows: torch.Tensor) -> None:
        """Score the prompt tokens after ``positions`` of ``seq`` with their logits ``rows`` (positions, vocab_size)."""
        if torch.isnan(rows).any():
            raise GenerationError("the model's logits for this request are NaN")
        targets = seq.tokens[positions.start + 1 : positions.stop + 1]
        assert seq.prompt_logprobs is not None and len(seq.prompt_logprobs) == positions.start
        seq.prompt_logprobs += token_logprobs(rows, targets, seq.params.prompt_logprobs or 0)

    @staticmethod
    def _logprobs(
        logits: torch.Tensor, seqs: list[Sequence], tokens: list[int | Exception]
    ) -> list[TokenLogprob | None]:
        """Each sampled token's ``TokenLogprob`` for the sequences that ask (``SamplingParams.logprobs``), else None;
        one log-softmax over just their rows, so a step where none asks computes nothing."""
        picked = {i: t for i, (s, t) in enumerate(zip(seqs, tokens, strict=True))
                  if s.params.logprobs is not None and isinstance(t, int)}  # fmt: skip
        out: list[TokenLogprob | None] = [None] * len(seqs)
        if not picked:
            return out
        asking = list(picked)
        rows = logits[asking] if len(asking) < len(seqs) else logits
        counts = [seqs[i].params.logprobs or 0 for i in asking]
        for i, entry in zip(asking, token_logprobs(rows, list(picked.values()), counts), strict=True):
            out[i] = entry
        return out

    @classmethod
    def _sample(cls, logits: torch.Tensor, seqs: list[Sequence]) -> list[int | Exception]:
        """One token per sequence, each with its own settings and generator (its draws ignore the others), or the
        exception its sampling raised: that sequence alone fails."""
        with torch.inference_mode():
            top, where = logits.max(dim=-1)  # a row holding a NaN has NaN as its max
        best, nan = where.tolist(), [math.isnan(v) for v in top.tolist()]
        out: list[int | Exception] = []
        for i, seq in enumerate(seqs):
            try:
                out.append(cls._next_token(logits[i : i + 1], seq, best[i], nan[i]))
            except Exception as e:
                out.append(e)
        return out

    @staticmethod
    def _next_token(row: torch.Tensor, seq: Sequence, best: int, nan: bool) -> int:
        """The next token of ``seq`` from its logits ``row`` (1, vocab_size), with its own settings and generator
        (its draws ignore the other sequences); a greedy one takes ``best``, the argmax of its row."""
        if nan:
            raise GenerationError("the model's logits for this request are NaN")
        p = seq.params
        if p.temperature == 0 and p.repetition_penalty == 1:
            return best
        with torch.inference_mode():
            row = row.to(torch.promote_types(row.dtype, torch.float32))  # a penalised fp16 logit could overflow
            if p.repetition_penalty != 1:
                seen = torch.tensor(seq.tokens, dtype=torch.long)
                row = apply_repetition_penalty(row, seen, p.repetition_penalty)
            return int(sample_next(row, p.temperature, p.top_k, p.top_p, generators=[seq.generator])[0])

    def _advance(self, seq: Sequence, token: int, logprob: TokenLogprob | None = None) -> Event:
        """Give ``seq`` its sampled ``token`` and say what happened (it ends at a stop, its length or the context)."""
        kept, text, reason, stop = seq.advance(token, self.model.context_length)
        if reason is None:
            return Event(seq.request_id, token, None, text, logprob=logprob,
                         prompt_logprobs=seq.report_prompt_logprobs())  # fmt: skip
        return self._end(seq, token if kept else None, reason, text, stop, logprob if kept else None)

    def _end(
        self,
        seq: Sequence,
        token: int | None,
        reason: str,
        text: str,
        stop_reason: int | str | None = None,
        logprob: TokenLogprob | None = None,
    ) -> Event:
        self.scheduler.finish(seq, reason)
        self.requests.pop(seq.request_id, None)
        prompt_logprobs = seq.report_prompt_logprobs()
        return Event(seq.request_id, token, reason, text, stop_reason, logprob=logprob, prompt_logprobs=prompt_logprobs)

    def _fail(self, seq: Sequence, error: Exception) -> Event:
        """End ``seq`` with reason ``"error"``, whatever state its failure left it in."""
        if seq.status is not Status.FINISHED:
            self.scheduler.finish(seq, "error")
        self.requests.pop(seq.request_id, None)
        return Event(seq.request_id, None, "error", error=error)

    # ---- many prompts at once -------------------------------------------------------------------------------

    def generate(
        self,
        prompts: Seq[Seq[int] | str],
        params: SamplingParams | Seq[SamplingParams] | None = None,
        *,
        progress: bool = False,
    ) -> list[Completion]:
        """Run ``prompts`` to completion (``params``: one for all, or one per prompt); completions in prompt order.

        A prompt whose generation fails (reason ``"error"``) aborts the others and raises: its ``LMError`` as a
        ``GenerationError`` naming the prompt, anything else as it was raised."""
        if isinstance(params, SamplingParams) or params is None:
            per_prompt = [params or SamplingParams()] * len(prompts)
        else:
            per_prompt = list(params)
            if len(per_prompt) != len(prompts):
                raise GenerationError(f"{len(prompts)} prompts but {len(per_prompt)} SamplingParams")
        ids = [self.add_request(p, sp) for p, sp in zip(prompts, per_prompt, strict=True)]
        order = {rid: i for i, rid in enumerate(ids)}
        tokens: list[list[int]] = [[] for _ in prompts]
        texts = ["" for _ in prompts]
        reasons: list[str | None] = [None] * len(prompts)
        stops: list[int | str | None] = [None] * len(prompts)
        logprobs: list[list[TokenLogprob] | None] = [[] if sp.logprobs is not None else None for sp in per_prompt]
        prompt_logprobs: list[list[TokenLogprob | None] | None] = [None] * len(prompts)
        with tqdm(total=len(prompts), desc="generating", unit="prompt", disable=not progress, leave=False) as bar:
            while any(r is None for r in reasons):
                for event in self.step():
                    i = order.get(event.request_id)
                    if i is None:
                        continue
                    if event.token is not None:
                        tokens[i].append(event.token)
                    if event.logprob is not None:
                        logprobs[i].append(event.logprob)  # type: ignore[union-attr]
                    if event.prompt_logprobs is not None:
                        prompt_logprobs[i] = event.prompt_logprobs
                    texts[i] += event.text
                    if event.error is not None:
                        self._give_up(ids, i, event.error)
                    if event.finish_reason is not None:
                        reasons[i], stops[i] = event.finish_reason, event.stop_reason
                        bar.update()
        with_text = self.tokenizer is not None
        return [
            Completion(t, r, texts[i] if with_text else None, stops[i], logprobs[i], prompt_logprobs[i])  # type: ignore[arg-type]
            for i, (t, r) in enumerate(zip(tokens, reasons, strict=True))
        ]

    def _give_up(self, ids: list[int], failed: int, error: Exception) -> None:
        """Abort the requests ``ids`` of a ``generate`` and raise the error of the one at index ``failed``."""
        for rid in ids:
            self.abort(rid)
        self._ended = [e for e in self._ended if e.request_id not in ids]  # nobody waits for them
        if isinstance(error, LMError):
            raise GenerationError(f"prompt {failed}: {error}") from error
        raise error

    def stats(self) -> EngineStats:
        s = self.scheduler
        return EngineStats(
            running=len(s.running),
            waiting=len(s.waiting),
            blocks_used=self.blocks.num_used,
            blocks_free=self.blocks.num_free,
            block_size=self.blocks.block_size,
            preemptions=s.preemptions,
            steps=s.steps,
            kv_tokens=sum(seq.num_computed for seq in s.running),
            kv_bytes=self.cache.bytes,
        )


def _check_positive(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise GenerationError(f"{name} must be an integer >= 1, got {value!r}")
