from __future__ import annotations

import json
from pathlib import Path

import pytest

from lmfoundry.errors import InvalidInputError
from lmfoundry.rag.documents import html_to_text, iter_files, load_documents, load_file


def _minimal_pdf(pages: list[str]) -> bytes:
    """A valid PDF with one Helvetica text line per page (written by hand: no PDF writer needed)."""
    n = len(pages)
    objects = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        "<< /Type /Pages /Kids [" + " ".join(f"{3 + 2 * i} 0 R" for i in range(n)) + f"] /Count {n} >>",
    ]
    font = 3 + 2 * n
    for i, text in enumerate(pages):
        stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET"
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {4 + 2 * i} 0 R "
            f"/Resources << /Font << /F1 {font} 0 R >> >> >>"
        )
        objects.append(f"<< /Length {len(stream)} >>\nstream\n{stream}\nendstream")
    objects.append("<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    out = b"%PDF-1.4\n"
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n{body}\nendobj\n".encode()
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return out


def test_text_and_markdown_keep_source_and_format(corpus_dir: Path) -> None:
    [doc] = load_file((corpus_dir / "paris.md").resolve())
    assert doc.text.startswith("# Paris")
    assert doc.source == str((corpus_dir / "paris.md").resolve())
    assert doc.metadata["format"] == "markdown"
    assert doc.metadata["origin"] == doc.source


def test_html_drops_scripts_and_page_chrome(tmp_path: Path) -> None:
    html = (
        "<html><head><title>T1</title><style>.x{color:red}</style></head><body>"
        "<header>SITE HEADER</header><nav>MENU</nav><script>var secret = 1;</script>"
        "<p>Main paragraph one.</p><p>Second <b>bold</b> part.</p><footer>COPYRIGHT</footer></body></html>"
    )
    text, title = html_to_text(html)
    assert title == "T1"
    assert "Main paragraph one." in text and "bold" in text
    for chrome in ("SITE HEADER", "MENU", "secret", "COPYRIGHT", "color:red"):
        assert chrome not in text
    (tmp_path / "page.html").write_text(html, encoding="utf-8")
    [doc] = load_file(tmp_path / "page.html")
    assert doc.metadata["title"] == "T1" and doc.metadata["format"] == "html"


def test_pdf_pages_are_extracted(tmp_path: Path) -> None:
    path = tmp_path / "two.pdf"
    path.write_bytes(_minimal_pdf(["Hello from page one", "Goodbye from page two"]))
    [doc] = load_file(path)
    assert "Hello from page one" in doc.text and "Goodbye from page two" in doc.text
    assert doc.metadata["pages"] == 2


def test_damaged_pdf_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.pdf"
    path.write_bytes(b"not a pdf at all")
    with pytest.raises(InvalidInputError, match="cannot read PDF"):
        load_file(path)


def test_jsonl_text_field_and_metadata(tmp_path: Path) -> None:
    path = tmp_path / "records.jsonl"
    rows = [{"id": "a1", "text": "first", "lang": "en"}, {"text": "second", "lang": "fr"}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n", encoding="utf-8")
    docs = load_file(path)
    assert [d.text for d in docs] == ["first", "second"]
    assert docs[0].source == f"{path}#a1" and docs[1].source == f"{path}#2"
    assert docs[1].metadata["lang"] == "fr" and "text" not in docs[1].metadata


@pytest.mark.parametrize("line", ['{"title": "no text"}', "{broken", '"just a string"'])
def test_jsonl_bad_lines_name_the_line(tmp_path: Path, line: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "ok"}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(InvalidInputError, match=r"bad.jsonl:2"):
        load_file(path)


def test_directory_is_recursive_with_include_and_exclude(corpus_dir: Path) -> None:
    (corpus_dir / ".hidden.txt").write_text("hidden", encoding="utf-8")
    (corpus_dir / "image.png").write_bytes(b"\x89PNG")
    names = [p.name for p in iter_files(corpus_dir)]
    assert names == ["cats.txt", "paris.md", "banks.txt"]
    assert [p.name for p in iter_files(corpus_dir, include=["*.txt"])] == ["cats.txt", "banks.txt"]
    assert [p.name for p in iter_files(corpus_dir, exclude=["sub/*"])] == ["cats.txt", "paris.md"]
    assert {d.source for d in load_documents([corpus_dir])} == {
        str(p.resolve()) for p in iter_files(corpus_dir)
    }


def test_builtin_python_reference_one_document_per_topic() -> None:
    from pydoc_data.topics import topics

    docs = load_documents(["builtin:python-reference"])
    assert len(docs) == len(topics)
    by_source = {d.source: d for d in docs}
    assert by_source["python-reference:assert"].text == topics["assert"]
    assert by_source["python-reference:assert"].metadata["topic"] == "assert"


@pytest.mark.parametrize(
    ("spec", "message"),
    [("builtin:nope", "unknown built-in corpus"), ("/no/such/path", "no such file")],
)
def test_bad_paths_are_clear_errors(spec: str, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        load_documents([spec])


def test_unsupported_file_type(tmp_path: Path) -> None:
    (tmp_path / "x.docx").write_bytes(b"PK")
    with pytest.raises(InvalidInputError, match="unsupported file type .docx"):
        load_documents([tmp_path / "x.docx"])
