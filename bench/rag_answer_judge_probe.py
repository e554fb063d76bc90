"""How far to trust a judge's support verdicts (`lmf eval rag-answers` faithfulness): ask it about
statements whose answer is known and measure accuracy and Cohen's kappa.

For each of N topics of the Python language reference, the context is the topic's opening
passage; a statement copied from that passage must be judged supported ("yes"), and a statement
copied from a different topic must be judged unsupported ("no"). Copied statements are the
easiest possible case, so this is an upper bound on how well the judge does on real answers.

    .venv/bin/python bench/rag_answer_judge_probe.py --judge smollm2-135m-instruct --topics 10

One JSON line on stdout.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time

from lmfoundry.eval.judge_agreement import cohens_kappa
from lmfoundry.eval.judges import GeneratorJudge
from lmfoundry.eval.rag_answer_judge import Verdicts, judge_support
from lmfoundry.generate.engine import load_model
from lmfoundry.types import SamplingParams

TOPICS = ["assert", "break", "return", "lambda", "global", "nonlocal", "pass", "raise", "del", "with",
          "while", "import", "yield", "try", "if"]  # fmt: skip


def passage(text: str, chars: int = 1200) -> str:
    return " ".join(text.split())[:chars]


def sentences(text: str) -> list[str]:
    """Prose sentences of 8-40 words (not the topic's heading or grammar rules)."""
    found = re.split(r"(?<=[.!?])\s+", text)
    return [s for s in found if 8 <= len(s.split()) <= 40 and "::=" not in s and "*" not in s]


def probe_items(n: int) -> list[tuple[str, str, bool]]:
    """(context, statement, supported) pairs: one supported and one unsupported per topic; the
    unsupported statement comes from the next topic."""
    from pydoc_data.topics import topics

    usable = [(passage(topics[name]), sentences(passage(topics[name]))) for name in TOPICS]
    usable = [(context, found[0]) for context, found in usable if found][: n + 1]
    items = []
    for i, (context, statement) in enumerate(usable[:n]):
        items.append((context, statement, True))
        items.append((context, usable[(i + 1) % len(usable)][1], False))
    return items


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--judge", default="smollm2-135m-instruct", help="judge model")
    parser.add_argument("--topics", type=int, default=10, help="topics (two statements each)")
    parser.add_argument("--max-tokens", type=int, default=32, help="judge reply budget (as the run used)")
    args = parser.parse_args(argv)
    judge = GeneratorJudge(
        load_model(args.judge), SamplingParams(temperature=0.0, max_new_tokens=args.max_tokens)
    )
    truth, said, started = [], [], time.perf_counter()
    for context, statement, supported in probe_items(args.topics):
        verdicts = Verdicts()
        judge_support(judge, statement, {0: context}, verdicts)
        truth.append(supported)
        said.append(verdicts.claims[0]["supported"])
        print(f"{len(said)}: truth {supported} judge {said[-1]}", file=sys.stderr, flush=True)
    parsed = [(t, s) for t, s in zip(truth, said, strict=True) if s is not None]
    result = {
        "judge": args.judge,
        "n": len(truth),
        "n_unparseable": len(truth) - len(parsed),
        "accuracy": sum(t == s for t, s in parsed) / len(parsed) if parsed else None,
        "yes_rate": sum(s for _, s in parsed) / len(parsed) if parsed else None,
        "kappa": cohens_kappa([t for t, _ in parsed], [s for _, s in parsed]),
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
