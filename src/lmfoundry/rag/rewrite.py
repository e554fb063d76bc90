"""Model-based query rewriting (HyDE, Gao et al. 2022): a model writes a short passage that would
answer the question, and the retriever searches with the question plus that passage.

A question and the chunk that answers it are worded differently; a passage written as an answer
is worded like the chunks (the model's facts may be wrong, but its vocabulary is the corpus's).
The question is kept in front so a wrong passage cannot drown it. This costs one generation per
query, so it is an evaluation option (`lmf rag eval --rewrite hyde`), measured before any default.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from lmfoundry.rag.retrieval_eval import EvalQuestion
from lmfoundry.rag.testset import Generator

HYDE_PROMPT = (
    "Write a short passage (two or three sentences) of reference documentation that answers this "
    "question. Reply with the passage only.\nQuestion: {question}"
)


def hyde_query(question: str, generate: Generator) -> str:
    """The question followed by the model's hypothetical answer passage."""
    passage = " ".join(generate(HYDE_PROMPT.format(question=question)).split())
    return f"{question}\n{passage}" if passage else question


def hyde_questions(
    questions: Sequence[EvalQuestion], generate: Generator, on_question: Callable[[], None] | None = None
) -> list[EvalQuestion]:
    """`questions` with each question text rewritten by `hyde_query` (labels unchanged)."""
    rewritten = []
    for q in questions:
        rewritten.append(replace(q, question=hyde_query(q.question, generate)))
        if on_question:
            on_question()
    return rewritten
