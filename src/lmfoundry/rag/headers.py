"""Contextual chunk headers: the document title and section path prepended to a chunk's
embedded text (the stored and cited text stays the chunk itself).

A chunk from the middle of a long page often never names its subject ("It is evaluated once,
before the loop starts"); the header puts "for > The for statement" back in front of it.
Section paths come from Markdown headings (`#`, `##`, ...) before the chunk's start.
"""

from __future__ import annotations

import re

from lmfoundry.rag.documents import Document
from lmfoundry.types import Chunk

_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$", re.MULTILINE)


def document_title(doc: Document) -> str:
    """Metadata title, else the Python-reference topic, else the file's name."""
    for key in ("title", "topic"):
        value = doc.metadata.get(key)
        if isinstance(value, str) and value:
            return value
    return re.split(r"[/\\]", doc.source)[-1]


def section_path(text: str, start: int) -> list[str]:
    """The Markdown headings that enclose offset `start` (one starting there included),
    outermost first."""
    stack: list[tuple[int, str]] = []
    for match in _HEADING.finditer(text):
        if match.start() > start:
            break
        level = len(match.group(1))
        stack = [(lv, title) for lv, title in stack if lv < level]
        stack.append((level, match.group(2)))
    return [title for _, title in stack]


def contextual_text(doc: Document, chunk: Chunk) -> str:
    """`title > section > subsection` on its own line, then the chunk's text."""
    parts = [document_title(doc), *section_path(doc.text, chunk.start)]
    return " > ".join(dict.fromkeys(p for p in parts if p)) + "\n" + chunk.text
