"""The tinytales generator: deterministic, well-formed, varied — and the ``lm-demo-corpus`` command."""

import hashlib
import random
import re

import pytest

from cs336_lm.cli.demo_corpus import main as demo_corpus_main
from cs336_lm.tinytales import EOT, an, iter_documents, split_documents, write_corpus
from cs336_lm.tinytales import stories as tinytales

WORD = re.compile(r"[A-Za-z']+")


@pytest.fixture(scope="module")
def corpus_2mb() -> str:
    return "".join(iter_documents(2_000_000, seed=123))


def test_same_seed_same_bytes_and_prefix_property():
    a = "".join(iter_documents(200_000, seed=7))
    b = "".join(iter_documents(200_000, seed=7))
    assert a == b
    longer = "".join(iter_documents(400_000, seed=7))
    assert longer.startswith(a)  # a smaller corpus is a prefix of a larger one with its seed


def test_different_seeds_differ():
    a = split_documents("".join(iter_documents(100_000, seed=1)))
    b = split_documents("".join(iter_documents(100_000, seed=2)))
    assert not set(a) & set(b)


def test_string_seed_is_stable_across_processes():
    # str seeds go through SHA-512 in random.seed, so they do not depend on PYTHONHASHSEED.
    first = next(tinytales.iter_stories("valid-0"))
    assert first == tinytales.generate_story(random.Random("valid-0"))


def test_separator_format(corpus_2mb):
    assert corpus_2mb.endswith(f"\n{EOT}\n")
    lines = corpus_2mb.split("\n")
    eot_lines = [i for i, line in enumerate(lines) if EOT in line]
    assert all(lines[i] == EOT for i in eot_lines)  # the separator always stands alone on its line
    docs = corpus_2mb.split(f"{EOT}\n")[:-1]
    assert len(docs) == len(eot_lines)
    assert all(doc.endswith("\n") and not doc.startswith("\n") and "\n\n" not in doc for doc in docs)


def test_size_is_reached_by_at_most_one_story():
    docs = list(iter_documents(50_000, seed=3))
    total = sum(len(d.encode()) for d in docs)
    assert total >= 50_000
    assert total - len(docs[-1].encode()) < 50_000
    assert list(iter_documents(0, seed=3)) == []


def test_no_duplicate_stories_or_openings(corpus_2mb):
    stories = split_documents(corpus_2mb)
    assert len(stories) > 2000
    hashes = {hashlib.sha256(s.encode()).digest() for s in stories}
    assert len(hashes) == len(stories)
    first_paragraphs = {s.split("\n")[0] for s in stories}
    assert len(first_paragraphs) == len(stories)


def test_vocabulary_is_rich(corpus_2mb):
    # Measured: about 1,600 distinct words in 100 KB, 2,700 in 1 MB, 2,870 in 2 MB, 3,260 in 20 MB.
    distinct = {w.lower() for w in WORD.findall(corpus_2mb)}
    assert len(distinct) >= 2700
    assert len(distinct) <= 4000  # still a small world a small model can learn


def test_story_lengths_and_shape(corpus_2mb):
    stories = split_documents(corpus_2mb)
    lengths = [len(s.split()) for s in stories]
    assert min(lengths) >= 60 and max(lengths) <= 300
    assert 100 <= sum(lengths) / len(lengths) <= 200
    assert all(s.count("\n") == 2 for s in stories)  # beginning, problem, ending
    assert sum('"' in s for s in stories) / len(stories) > 0.6  # most stories have dialogue
    assert "{" not in corpus_2mb and "}" not in corpus_2mb  # every template field was filled


def test_plain_english_text(corpus_2mb):
    raw = corpus_2mb.encode("utf-8")
    assert raw.decode("utf-8") == corpus_2mb
    assert raw.isascii()
    for story in split_documents(corpus_2mb)[:500]:
        for sentence in re.split(r"(?<=[.!?]) (?=[A-Z\"])", story.replace("\n", " ")):
            assert sentence[0].isupper() or sentence.startswith('"'), sentence


def test_many_plots_characters_and_places(corpus_2mb):
    stories = split_documents(corpus_2mb)[:3000]
    names = {m for s in stories for m in re.findall(r"named ([A-Z][a-z]+)", s)}
    assert len(names) > 300
    places = {p for p, _ in tinytales.words.PLACES if any(f" {p} " in s or f" {p}," in s for s in stories)}
    assert len(places) > 40
    openings = {s.split(",")[0] for s in stories}
    assert len(openings) > 20


def test_article():
    assert an("owl") == "an owl"
    assert an("kite") == "a kite"
    assert an("Umbrella") == "an Umbrella"


def test_sentence_case():
    assert (
        tinytales._sentence_case('a fox came. "a hat!" she said. the end') == 'A fox came. "A hat!" she said. The end'
    )


def test_write_corpus_atomic_and_stats(tmp_path):
    stats = write_corpus(tmp_path / "c.txt", 30_000, seed=5, progress=False)
    text = (tmp_path / "c.txt").read_text(encoding="utf-8")
    assert stats["bytes"] == len(text.encode()) and stats["stories"] == text.count(EOT)
    assert text == "".join(iter_documents(30_000, seed=5))
    assert [p.name for p in tmp_path.iterdir()] == ["c.txt"]


def test_cli_writes_splits_and_skips_when_up_to_date(tmp_path, capsys):
    out = tmp_path / "demo"
    assert demo_corpus_main(["--size-mb", "0.05", "--valid-mb", "0.01", "--out", str(out), "--quiet"]) == 0
    train = (out / "train.txt").read_text(encoding="utf-8")
    valid = (out / "valid.txt").read_text(encoding="utf-8")
    assert len(train.encode()) >= 50_000 and len(valid.encode()) >= 10_000
    assert not set(split_documents(train)) & set(split_documents(valid))
    capsys.readouterr()
    mtime = (out / "train.txt").stat().st_mtime_ns
    assert demo_corpus_main(["--size-mb", "0.05", "--valid-mb", "0.01", "--out", str(out), "--quiet"]) == 0
    assert "up to date" in capsys.readouterr().out
    assert (out / "train.txt").stat().st_mtime_ns == mtime
    assert (
        demo_corpus_main(["--size-mb", "0.05", "--valid-mb", "0.01", "--seed", "1", "--out", str(out), "--quiet"]) == 0
    )
    assert (out / "train.txt").read_text(encoding="utf-8") != train


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--size-mb", "0"], "--size-mb must be a positive number, got 0.0"),
        (["--size-mb", "nan"], "--size-mb must be a positive number, got nan"),
        (["--size-mb", "inf"], "--size-mb must be a positive number, got inf"),
        (["--size-mb", "0.01", "--valid-mb", "inf"], "--valid-mb must be a positive number, got inf"),
        (["--size-mb", "0.01", "--valid-mb", "-1"], "--valid-mb must be a positive number, got -1.0"),
    ],
)
def test_cli_rejects_bad_sizes(tmp_path, capsys, args, message):
    assert demo_corpus_main([*args, "--out", str(tmp_path / "demo")]) == 2
    assert capsys.readouterr().err == f"error: {message}\n"
    assert not (tmp_path / "demo").exists()


def test_cli_rewrites_a_corpus_whose_files_changed_since(tmp_path, capsys):
    out = tmp_path / "demo"
    args = ["--size-mb", "0.02", "--out", str(out), "--quiet"]
    assert demo_corpus_main(args) == 0
    expected = (out / "train.txt").read_bytes()
    damaged = bytearray(expected)
    damaged[len(damaged) // 2] ^= 0x20  # same size, one letter's case flipped
    (out / "train.txt").write_bytes(damaged)
    capsys.readouterr()
    assert demo_corpus_main(args) == 0
    assert f"{out / 'train.txt'} differs from what {out / 'corpus.json'} records" in capsys.readouterr().out
    assert (out / "train.txt").read_bytes() == expected


def test_cli_refuses_an_out_that_cannot_be_a_directory(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    for out, reason in [("file", "it exists and is not a directory"), ("file/demo", "file is a file, not a directory")]:
        assert demo_corpus_main(["--size-mb", "0.01", "--out", str(tmp_path / out), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: cannot write {tmp_path / out}: ") and err.count("\n") == 1 and reason in err
    assert (tmp_path / "file").read_text() == "x"


def test_cli_on_a_full_disk_is_one_line_and_leaves_no_directory(tmp_path, capsys, full_disk):
    full_disk(free=1000)
    out = tmp_path / "new" / "demo"
    assert demo_corpus_main(["--size-mb", "0.01", "--out", str(out), "--quiet"]) == 2
    assert capsys.readouterr().err == f"error: cannot write {out / 'train.txt'}: No space left on device\n"
    assert list(tmp_path.iterdir()) == []  # new/demo, made for the corpus, is removed again


def test_cli_refuses_a_corpus_larger_than_the_free_space(tmp_path, capsys):
    assert demo_corpus_main(["--size-mb", "1e12", "--out", str(tmp_path / "demo"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot write {tmp_path / 'demo'}: the corpus needs 1,050,000,000,000.0 MB but")
    assert not (tmp_path / "demo").exists()


@pytest.mark.slow
def test_no_duplicates_at_20mb():
    seen = set()
    for doc in iter_documents(20_000_000, seed=0):
        digest = hashlib.sha256(doc.encode()).digest()
        assert digest not in seen
        seen.add(digest)
