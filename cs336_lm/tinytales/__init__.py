"""tinytales: a deterministic generator of short children's stories, the corpus ``make demo`` trains on.

``stories`` casts characters and renders plots into stories and writes corpora; ``plots`` holds the sentence
templates (openings, twelve plots in four stages, closings) and ``words`` the word banks they draw from.
A seed and a size give the same bytes on every run.
"""

from cs336_lm.tinytales.stories import (
    EOT,
    GENERATOR_VERSION,
    an,
    generate_story,
    iter_documents,
    iter_stories,
    split_documents,
    story_fields,
    write_corpus,
)

__all__ = [
    "EOT",
    "GENERATOR_VERSION",
    "an",
    "generate_story",
    "iter_documents",
    "iter_stories",
    "split_documents",
    "story_fields",
    "write_corpus",
]
