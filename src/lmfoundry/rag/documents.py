"""Turn files, directories and built-in corpora into `Document`s (text + source + metadata).

Every document remembers where it came from (`source`) and which file or corpus produced it
(`metadata["origin"]`), so incremental indexing can tell new, changed and deleted sources apart.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmfoundry.errors import InvalidInputError
from lmfoundry.fsutil import read_jsonl
from lmfoundry.plugins import require

BUILTIN_PREFIX = "builtin:"
TEXT_SUFFIXES = {".txt", ".text", ".rst", ".md", ".markdown"}
HTML_SUFFIXES = {".html", ".htm"}
_DROPPED_HTML_TAGS = ["script", "style", "nav", "header", "footer", "noscript", "template"]


@dataclass(frozen=True)
class Document:
    """One loadable unit of text; `source` is unique within a store."""

    source: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)


def load_text(path: Path) -> list[Document]:
    """Plain text and Markdown are taken as they are (Markdown stays readable as text)."""
    text = path.read_text(encoding="utf-8", errors="replace")
    kind = "markdown" if path.suffix.lower() in {".md", ".markdown"} else "text"
    return [Document(str(path), text, {"origin": str(path), "format": kind})]


def html_to_text(html: str) -> tuple[str, str]:
    """Main text of an HTML page and its title, without scripts, styles and page chrome."""

    bs4 = require("bs4", extra="rag", package="beautifulsoup4")
    soup = bs4.BeautifulSoup(html, "html.parser")
    for tag in soup(_DROPPED_HTML_TAGS):
        tag.decompose()
    title = soup.title.get_text(strip=True) if soup.title else ""
    if soup.title:
        soup.title.decompose()
    root = soup.find("main") or soup.find("article") or soup.body or soup
    lines = [line.strip() for line in root.get_text("\n").splitlines()]
    text = "\n".join(line for line in lines if line)
    return text, title


def load_html(path: Path) -> list[Document]:
    text, title = html_to_text(path.read_text(encoding="utf-8", errors="replace"))
    meta: dict[str, Any] = {"origin": str(path), "format": "html"}
    if title:
        meta["title"] = title
    return [Document(str(path), text, meta)]


def load_pdf(path: Path) -> list[Document]:
    """All pages' text, pages separated by blank lines (so chunking can break between pages)."""

    pypdf = require("pypdf", extra="rag")
    try:
        reader = pypdf.PdfReader(str(path))
        pages = [page.extract_text() or "" for page in reader.pages]
    except Exception as exc:  # pypdf raises many types for damaged files
        raise InvalidInputError(f"cannot read PDF {path}: {exc}") from exc
    meta = {"origin": str(path), "format": "pdf", "pages": len(pages)}
    return [Document(str(path), "\n\n".join(p.strip() for p in pages), meta)]


def load_jsonl(path: Path) -> list[Document]:
    """One document per line: the `text` field is the text, every other field is metadata.

    The source is `<path>#<id>` when a line has an `id` field, else `<path>#<line number>`.
    """
    docs = []
    for lineno, record in read_jsonl(path, f"no such file: {path}"):
        if not isinstance(record.get("text"), str):
            raise InvalidInputError(f"{path}:{lineno}: each line needs a string 'text' field")
        text = record.pop("text")
        key = record.get("id", lineno)
        meta = {**record, "origin": str(path), "format": "jsonl"}
        docs.append(Document(f"{path}#{key}", text, meta))
    return docs


def load_python_reference() -> list[Document]:
    """The Python language reference topics that ship with every Python (pydoc_data)."""
    from pydoc_data.topics import topics

    return [
        Document(
            f"python-reference:{key}",
            text,
            {"origin": "builtin:python-reference", "format": "text", "topic": key},
        )
        for key, text in sorted(topics.items())
    ]


LOADERS: dict[str, Callable[[Path], list[Document]]] = {
    **{suffix: load_text for suffix in TEXT_SUFFIXES},
    **{suffix: load_html for suffix in HTML_SUFFIXES},
    ".pdf": load_pdf,
    ".jsonl": load_jsonl,
}
BUILTINS: dict[str, Callable[[], list[Document]]] = {"python-reference": load_python_reference}


def load_file(path: Path) -> list[Document]:
    loader = LOADERS.get(path.suffix.lower())
    if loader is None:
        known = ", ".join(sorted(LOADERS))
        raise InvalidInputError(
            f"unsupported file type {path.suffix or '(none)'} for {path} (known: {known})"
        )
    return loader(path)


def _selected(rel: str, include: Sequence[str], exclude: Sequence[str]) -> bool:
    name = rel.rsplit("/", 1)[-1]

    def hit(pattern: str) -> bool:
        return fnmatch.fnmatch(rel, pattern) or fnmatch.fnmatch(name, pattern)

    if include and not any(hit(p) for p in include):
        return False
    return not any(hit(p) for p in exclude)


def iter_files(root: Path, include: Sequence[str] = (), exclude: Sequence[str] = ()) -> Iterator[Path]:
    """Files under `root` (recursive, sorted, hidden files skipped) that a loader understands.

    `include`/`exclude` are glob patterns matched against the path relative to `root` and
    against the file name (`*.md`, `drafts/*`).
    """
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if not path.is_file() or any(part.startswith(".") for part in rel.split("/")):
            continue
        if path.suffix.lower() in LOADERS and _selected(rel, include, exclude):
            yield path


def origins(spec: str, include: Sequence[str] = (), exclude: Sequence[str] = ()) -> list[str]:
    """The origins (files or built-in corpora) one path spec expands to."""
    if spec.startswith(BUILTIN_PREFIX):
        name = spec[len(BUILTIN_PREFIX) :]
        if name not in BUILTINS:
            raise InvalidInputError(f"unknown built-in corpus {spec!r} (known: {', '.join(BUILTINS)})")
        return [spec]
    path = Path(spec).expanduser()
    if path.is_dir():
        return [str(p.resolve()) for p in iter_files(path, include, exclude)]
    if path.is_file():
        return [str(path.resolve())]
    raise InvalidInputError(f"no such file or directory: {spec}")


def load_origin(origin: str) -> list[Document]:
    """Documents of one origin: a built-in corpus name or one file path."""
    if origin.startswith(BUILTIN_PREFIX):
        return BUILTINS[origin[len(BUILTIN_PREFIX) :]]()
    return load_file(Path(origin))


def load_documents(
    paths: Iterable[str | Path], include: Sequence[str] = (), exclude: Sequence[str] = ()
) -> list[Document]:
    """Load every document under `paths` (files, directories, `builtin:python-reference`)."""
    docs: list[Document] = []
    for spec in paths:
        for origin in origins(str(spec), include, exclude):
            docs.extend(load_origin(origin))
    return docs
