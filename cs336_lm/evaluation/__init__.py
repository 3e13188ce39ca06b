"""Measuring a trained model on a text without training it: loss, perplexity and bits per byte (``lm-perplexity``).

``windows`` cuts a token sequence into the context windows that score every token exactly once (a stride below the
context gives each scored token more left context); ``evaluate`` reads the data, runs the model over the windows
under ``torch.inference_mode`` and reports, for one checkpoint or every checkpoint of a run.
"""

from cs336_lm.evaluation.evaluate import EvalResult, evaluate_ids, evaluate_run, load_eval_data
from cs336_lm.evaluation.windows import Window, score_windows

__all__ = ["EvalResult", "Window", "evaluate_ids", "evaluate_run", "load_eval_data", "score_windows"]
