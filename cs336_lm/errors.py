"""The exceptions that carry a user-facing problem (bad input, bad config, bad files), and the one warning class.

Library code raises these with a message that names the problem and the file, key or value involved;
the command-line entry points (``cs336_lm.cli``) turn them into one line on stderr and exit status 2.
Anything else that escapes is a bug and keeps its traceback.
"""

import os


class LMError(Exception):
    """Base class: a problem with what the user gave us, reported as one line."""


class ConfigError(LMError):
    """An unknown key, a wrong type or an invalid value in a config or on the command line."""


class TokenizerError(LMError):
    """Unreadable or malformed tokenizer files, a vocabulary too small, an unknown token id."""


class DataError(LMError):
    """Missing, empty, non-UTF-8 or truncated input text or token files; ids that do not fit."""


class CheckpointError(LMError):
    """A checkpoint that is missing, truncated, not a checkpoint, or of another model shape."""


class DamagedCheckpointError(CheckpointError):
    """A checkpoint file whose bytes were damaged: torn, unreadable, or whose contents no longer match the digest
    stored in it. A resume passes over such a file to the newest checkpoint that verifies."""


class WriteError(LMError):
    """An output that could not be written: a full disk, a read-only or missing directory, a path through a file.

    The message is ``cannot write PATH: REASON``; whatever ``PATH`` held before is left as it was.
    """

    def __init__(self, path: str | os.PathLike, reason: str):
        super().__init__(path, reason)  # both in args, so the error pickles (a worker process may raise it)
        self.path, self.reason = path, reason

    def __str__(self) -> str:
        return f"cannot write {self.path}: {self.reason}"


class UnverifiedCheckpointWarning(UserWarning):
    """A checkpoint written before checkpoints carried a digest: it loads, but its contents cannot be verified."""


class GenerationError(LMError):
    """Invalid sampling settings or prompts."""


class ChatTemplateError(GenerationError):
    """A chat template that is not valid Jinja2, or that fails on (or refuses, with ``raise_exception``) a
    conversation."""


class DivergenceError(LMError):
    """The run diverged: its training loss became NaN/inf or rose far above where it started. ``lm-train`` exits
    with status 1; ``lm-sweep`` records the trial as diverged and goes on."""


class NonFiniteLossError(DivergenceError):
    """The training loss became NaN or infinite; the run stops without saving that state (exit status 1)."""


class LossRoseError(DivergenceError):
    """The training loss rose ``train.diverge_margin`` nats above its first step's (exit status 1); the last
    checkpoint before it stays."""


class PeerFailure(LMError):
    """Another process of a multi-process run failed; it reports the cause, so this one exits without repeating
    it (``quiet``)."""

    def __init__(self, message: str, quiet: bool = False):
        super().__init__(message)
        self.quiet = quiet


class InteropError(LMError):
    """A HuggingFace folder that is missing, malformed or holds something cs336_lm cannot represent (another
    architecture, RoPE scaling, biases, a tokenizer that is not byte-level BPE), or an export that cannot be written."""


class ServeError(LMError):
    """A request the HTTP server (``cs336_lm.serve``) refuses, answered as an OpenAI error body.

    ``status`` is the HTTP status (400 bad value, 401 bad key, 404 unknown model or path, 413 body too large,
    503 full queue or shutting down); ``param`` names the request field at fault and
    ``code`` is a short machine-readable reason (``"model_not_found"``, ``"context_length_exceeded"``, …).
    """

    def __init__(self, message: str, status: int = 400, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status = status
        self.param = param
        self.code = code
