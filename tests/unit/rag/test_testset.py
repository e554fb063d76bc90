"""Synthetic test sets: every filter on real texts, the pipeline with a scripted generator (the
model's quality is not the unit here), resuming from the progress file, and the CLI with a real
(tiny) model, including a killed `lmf rag testset` process that a rerun completes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from lmfoundry.cli.main import main
from lmfoundry.errors import InvalidInputError
from lmfoundry.rag import index_paths
from lmfoundry.rag.index import open_index
from lmfoundry.rag.retrieval_eval import load_questions
from lmfoundry.rag.testset import (
    QuestionOptions,
    answer_supported,
    copied,
    focus_sentences,
    generate_testset,
    grounded,
    key_terms,
    near_duplicate,
    parse_question,
)
from lmfoundry.rag.testset_progress import progress_path, summary_path

from .conftest import LONG_DOCS

PARIS = LONG_DOCS["paris.md"]


def test_parse_question_takes_the_first_real_question() -> None:
    assert (
        parse_question("Question: Which river crosses Paris?\nAnswer: the Seine")
        == "Which river crosses Paris?"
    )
    assert (
        parse_question("1. Why?\n2) How many districts does Paris have?")
        == "How many districts does Paris have?"
    )
    assert parse_question("Paris is the capital of France.") is None
    assert parse_question("Is " + "very " * 45 + "long?") is None


def test_grounded_needs_the_question_key_terms_in_the_chunk() -> None:
    assert grounded("Which river flows through the capital of France?", PARIS)
    assert not grounded("What is the boiling point of mercury in kelvin?", PARIS)
    assert not grounded("What is it?", PARIS)  # no key term at all
    assert key_terms("What does the cat eat?") == {"cat", "eat"}


def test_copied_detects_six_word_runs_only() -> None:
    assert copied("Is Paris the capital of France and lies on the river Seine?", PARIS)
    assert not copied("On which river does the French capital stand?", PARIS)
    assert copied("the capital of France and lies", "Paris is the Capital of\nFrance and lies there")


def test_answer_round_trip() -> None:
    q = "Which river flows through the capital?"
    assert answer_supported("It lies on the river Seine in the north.", PARIS, q)
    assert not answer_supported("Not answerable from the passage.", PARIS, q)
    assert not answer_supported("The river flows through the capital.", PARIS, q)  # adds nothing
    assert not answer_supported("The Thames, near Westminster abbey.", PARIS, q)  # not from the chunk


def test_near_duplicates() -> None:
    kept = [key_terms("Which river flows through Paris?")]
    assert near_duplicate("Through Paris, which river flows?", kept)
    assert not near_duplicate("How many districts does Paris have?", kept)


def test_focus_sentences_rank_informative_sentences_first() -> None:
    text = "# Paris\n\nIt is nice. " + PARIS.split("\n\n", 2)[2]
    sentences = focus_sentences(text)
    assert sentences[0].startswith("The city has twenty districts")  # more key terms than the Seine sentence
    assert sentences[1].startswith("Paris is the capital of France")
    assert len(sentences) == 2  # "It is nice." and the heading are too short to ask about
    code = '>>> d = {"one": 1, "two": 2} >>> list(d) shows the keys here.\n\n| "b" | Binary format, base 2 here |'
    assert focus_sentences(code + "\n\nThe keys of a dict keep their insertion order.") == [
        "The keys of a dict keep their insertion order."
    ]  # an interpreter session and a table row are not facts to ask about


def _scripted(replies: dict[str, tuple[str, str]]) -> Any:
    """A generator that, asked about a chunk or a sentence holding one of the words, writes that
    word's question, and in the round trip that question's answer."""

    def generate(prompt: Any) -> str:
        if isinstance(prompt, str) and prompt.startswith("Passage:"):  # the round trip
            return next(answer for question, answer in replies.values() if prompt.endswith(question[-20:]))
        focus = prompt if isinstance(prompt, str) else prompt[-1].content
        return next((question for word, (question, _) in replies.items() if word in focus), "No idea.")

    return generate


REPLIES = {
    "Seine": ("Question: Which river runs past the capital of France?", "The Seine, in the north."),  # kept
    "Kittens": ("Sure! Here you go.", ""),  # no question
    "savings": ("What is the boiling point of mercury in kelvin?", ""),  # not grounded
    "forecast": ("Rain in the morning and sunny spells in the afternoon?", ""),  # copied
}


def test_generate_testset_counts_each_filter(long_corpus_dir: Path, embedder: Any) -> None:
    index_paths([long_corpus_dir], "docs", embedder=embedder, progress=False)
    index = open_index("docs", embedder=embedder)
    try:
        rows, report = generate_testset(index, _scripted(REPLIES), QuestionOptions(n=10))
        chunk = next(c for c in index.store.chunks() if "Seine" in c.text)
    finally:
        index.close()
    # Paris: the question about the whole chunk is kept; cats: neither the chunk nor its two
    # sentences yield a question; banks and weather: the chunk, then their one sentence.
    assert (report.chunks, report.generated, report.parsed, report.grounded) == (4, 8, 5, 3)
    assert (report.not_copied, report.answerable, report.unique, report.kept) == (1, 1, 1, 1)
    assert report.examples_rejected["grounded"] == ["What is the boiling point of mercury in kelvin?"] * 2
    assert report.examples_kept == ["Which river runs past the capital of France?"]
    assert report.survival()["parsed"] == 0.625
    assert rows == [
        {
            "question": "Which river runs past the capital of France?",
            "source": chunk.source,
            "chunk_id": chunk.chunk_id,
        }
    ]


def test_later_candidates_ask_about_other_sentences(long_corpus_dir: Path, embedder: Any) -> None:
    """Asked about the whole Paris chunk and about its first focus sentence (districts), the model
    copies; about the second sentence (Seine) it writes a good question: the third candidate."""
    index_paths([long_corpus_dir], "docs", embedder=embedder, progress=False)
    replies = {"districts": ("Does the city have twenty districts arranged in a spiral?", "")} | REPLIES
    index = open_index("docs", embedder=embedder)
    try:
        generate = _scripted(replies)
        two, _ = generate_testset(index, generate, QuestionOptions(n=10, candidates=2))
        three, report = generate_testset(index, generate, QuestionOptions(n=10, candidates=3))
    finally:
        index.close()
    assert two == [] and [r["question"] for r in three] == ["Which river runs past the capital of France?"]
    assert (
        "Does the city have twenty districts arranged in a spiral?" in report.examples_rejected["not_copied"]
    )


class Killed(Exception):
    """Stands in for the process dying after a few chunks."""


def test_a_crashed_run_resumes_without_repeating_or_losing_chunks(
    long_corpus_dir: Path, embedder: Any, tmp_path: Path
) -> None:
    index_paths([long_corpus_dir], "docs", embedder=embedder, progress=False)
    progress = tmp_path / "q.progress.jsonl"
    asked: list[str] = []
    scripted = _scripted(REPLIES)

    def dies_after_two_chunks(prompt: Any) -> str:
        if len(progress.read_text().splitlines()) == 1 + 2:  # the header and two chunks
            raise Killed
        return scripted(prompt)

    def counted(prompt: Any) -> str:
        round_trip = isinstance(prompt, str) and prompt.startswith("Passage:")
        asked.extend([] if round_trip else [prompt])
        return scripted(prompt)

    options = QuestionOptions(n=4, candidates=2)
    index = open_index("docs", embedder=embedder)
    try:
        uninterrupted, full = generate_testset(index, scripted, options, model="m")
        with pytest.raises(Killed):
            generate_testset(index, dies_after_two_chunks, options, model="m", progress=progress)
        before = progress.read_text().splitlines()
        rows, report = generate_testset(index, counted, options, model="m", progress=progress)
        with pytest.raises(
            InvalidInputError, match=r"another configuration \(candidates: 2 -> 3\).*--restart"
        ):
            generate_testset(
                index, scripted, QuestionOptions(n=4, candidates=3), model="m", progress=progress
            )
        with pytest.raises(InvalidInputError, match="model: 'm' -> 'other'"):
            generate_testset(index, scripted, options, model="other", progress=progress)
    finally:
        index.close()
    lines = progress.read_text().splitlines()
    records = [json.loads(line) for line in lines[1:]]
    assert (
        lines[: len(before)] == before and len(before) == 1 + 2
    )  # the header and two chunks kept as written
    assert len({r["chunk_id"] for r in records}) == len(records) == 4
    assert len(asked) == sum(len(r["candidates"]) for r in records[2:])  # only the two chunks left
    assert rows == uninterrupted and report.to_dict() | {"config": {}} == full.to_dict() | {"config": {}}


def test_progress_file_repair_and_errors(long_corpus_dir: Path, embedder: Any, tmp_path: Path) -> None:
    index_paths([long_corpus_dir], "docs", embedder=embedder, progress=False)
    progress = tmp_path / "q.progress.jsonl"
    options = QuestionOptions(n=4, candidates=1)
    index = open_index("docs", embedder=embedder)
    try:
        rows, _ = generate_testset(index, _scripted(REPLIES), options, progress=progress)
        lines = progress.read_text().splitlines(keepends=True)
        progress.write_text("".join(lines[:3]) + lines[3][:25])  # killed while writing the third chunk
        again, report = generate_testset(index, _scripted(REPLIES), options, progress=progress)
        assert again == rows and report.done == 4 and progress.read_text() == "".join(lines)
        progress.write_text('{"question": "not a progress file"}\n')
        with pytest.raises(InvalidInputError, match="not a `lmf rag testset` progress file.*--restart"):
            generate_testset(index, _scripted(REPLIES), options, progress=progress)
    finally:
        index.close()


def test_generate_testset_errors(corpus_dir: Path, embedder: Any) -> None:
    index_paths([corpus_dir], "short", embedder=embedder, progress=False)
    index = open_index("short", embedder=embedder)
    try:
        with pytest.raises(InvalidInputError, match="no chunk of 30"):
            generate_testset(index, lambda prompt: "Why?", QuestionOptions(n=5))
    finally:
        index.close()
    with pytest.raises(InvalidInputError, match="--n must be >= 1"):
        QuestionOptions(n=0)
    with pytest.raises(InvalidInputError, match="--candidates must be >= 1"):
        QuestionOptions(candidates=0)


def test_testset_cli_with_a_real_model(
    long_corpus_dir: Path,
    embedder: Any,
    tiny_reader_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    index_paths([long_corpus_dir], "docs", embedder=embedder, progress=False)
    out = tmp_path / "q.jsonl"
    argv = ["rag", "testset", "docs", "--model", str(tiny_reader_dir), "--n", "2", "--out", str(out)]
    assert main([*argv, "--candidates", "2", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["filters"]["chunks"] == data["filters"]["done"] == 2
    assert 2 <= data["filters"]["generated"] <= 4
    assert out.is_file() and data["questions"] == len(out.read_text().splitlines())
    summary = json.loads(summary_path(out).read_text())
    assert summary["generated"] == data["filters"]["generated"] and summary["config"]["candidates"] == 2
    assert set(summary["survival"]) == {"parsed", "grounded", "not_copied", "answerable", "unique"}
    if data["questions"]:  # a random tiny model rarely writes a usable question
        assert load_questions(out)[0].chunk_id
    assert main(argv) == 1  # --candidates 3 (the default) is another configuration
    assert "holds a run with another configuration (candidates: 2 -> 3)" in capsys.readouterr().err
    assert main([*argv, "--threads", "0"]) == 1
    assert "--threads must be >= 1, got 0" in capsys.readouterr().err
    assert main([*argv, "--restart"]) == 0
    printed = capsys.readouterr().out
    assert "survivors of each filter" in printed and "not copied" in printed
    assert json.loads(progress_path(out).read_text().splitlines()[0])["testset_config"]["candidates"] == 3


def _many_chunk_corpus(root: Path, docs: int) -> Path:
    root.mkdir()
    animals = ["cat", "dog", "fox", "fish", "owl", "bee", "elk", "yak"]
    for i in range(docs):
        a = animals[i % len(animals)]
        (root / f"d{i:02d}.txt").write_text(
            f"The {a} number {i} sleeps for {i + 3} hours every day in a warm place near the river. "
            f"Each morning the {a} walks {i * 2} miles to find food and water before the sun rises. "
            f"Farmers in valley {i} say the {a} is calm, friendly and rarely afraid of people.\n",
            encoding="utf-8",
        )
    return root


def test_killed_testset_process_resumes_without_duplicates_or_losses(
    tmp_path: Path, lmf_home: Path, embedder: Any, tiny_reader_dir: Path
) -> None:
    """SIGKILL a real `lmf rag testset` after it recorded two chunks; the same command completes
    the run: every sampled chunk recorded once, the records written before the kill unchanged."""
    n = 6
    index_paths([_many_chunk_corpus(tmp_path / "many", n)], "many", embedder=embedder, progress=False)
    out = tmp_path / "q.jsonl"
    progress = progress_path(out)
    argv = ["rag", "testset", "many", "--model", str(tiny_reader_dir), "--n", str(n), "--out", str(out)]
    env = {**os.environ, "LMF_HOME": str(lmf_home), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    lmf = Path(sys.executable).parent / "lmf"
    proc = subprocess.Popen(
        [str(lmf), *argv, "--json"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if progress.is_file() and len(progress.read_bytes().splitlines()) >= 1 + 2:
            break
        time.sleep(0.02)
    assert proc.poll() is None, (
        f"finished or failed before the kill: {proc.stderr.read().decode() if proc.stderr else ''}"
    )
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists()  # the output is written only at the end
    written = progress.read_bytes()
    before = written[: written.rfind(b"\n") + 1].decode().splitlines()  # a cut-off last line is not kept
    assert 1 + 2 <= len(before) < 1 + n

    assert main(argv) == 0
    lines = progress.read_text().splitlines()
    records = [json.loads(line) for line in lines[1:]]
    assert lines[: len(before)] == before
    assert len(records) == len({r["chunk_id"] for r in records}) == n
    kept = [{"question": r["question"], "source": r["source"], "chunk_id": r["chunk_id"]} for r in records]
    assert [json.loads(line) for line in out.read_text().splitlines()] == [r for r in kept if r["question"]]
