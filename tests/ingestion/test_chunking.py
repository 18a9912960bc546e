"""chunk_elements: ids, order, titles and pages, on real unstructured elements."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tribrid.errors import ConfigError
from tribrid.ingestion.chunking import chunk_elements
from tribrid.ingestion.parsing import partition_document, prepare_unstructured
from tribrid.store.points import content_hash, point_id


def _element(kind: str, text: str, page: int | None = None, filetype: str | None = None) -> Any:
    """A real unstructured element, imported only after its telemetry has been switched off."""
    prepare_unstructured()
    from unstructured.documents import elements

    element = getattr(elements, kind)(text)
    if page is not None or filetype is not None:
        element.metadata = elements.ElementMetadata(page_number=page, filetype=filetype)
    return element


def _title(text: str, page: int | None = None, filetype: str | None = None) -> Any:
    return _element("Title", text, page, filetype)


def _para(text: str, page: int | None = None, filetype: str | None = None) -> Any:
    return _element("NarrativeText", text, page, filetype)


def _blank(text: str) -> Any:
    return _element("Text", text)


def _sentence(n: int) -> str:
    return f"Sentence number {n} says something about berths and cranes in the harbour. "


def test_point_ids_are_stable_across_runs(tmp_path: Path) -> None:
    path = tmp_path / "notes.md"
    path.write_text("# Pier\n\n" + "".join(_sentence(i) for i in range(60)) + "\n")

    first = chunk_elements(
        partition_document(path, document_key="notes.md"), source_key="s", document_key="notes.md"
    )
    second = chunk_elements(
        partition_document(path, document_key="notes.md"), source_key="s", document_key="notes.md"
    )

    assert len(first) > 1
    assert [c.point_id for c in first] == [c.point_id for c in second]
    for chunk in first:
        assert chunk.content_hash == content_hash(chunk.text)
        assert chunk.point_id == point_id("s", "notes.md", chunk.content_hash, 0)


def test_ids_depend_on_source_and_document() -> None:
    elements = [_title("Pier"), _para(_sentence(1))]

    a = chunk_elements(elements, source_key="s", document_key="a.md")
    b = chunk_elements(elements, source_key="s", document_key="b.md")
    c = chunk_elements(elements, source_key="t", document_key="a.md")

    assert len({a[0].point_id, b[0].point_id, c[0].point_id}) == 3


def test_identical_texts_in_one_document_get_distinct_ids(tmp_path: Path) -> None:
    path = tmp_path / "repeats.md"
    section = "# Disclaimer\n\nThis page intentionally repeats the same legal boilerplate.\n\n"
    path.write_text(section * 3)
    elements = partition_document(path, document_key="repeats.md")

    chunks = chunk_elements(
        elements, source_key="s", document_key="repeats.md", combine_text_under_n_chars=0
    )

    assert len(chunks) == 3
    assert len({c.text for c in chunks}) == 1
    assert len({c.point_id for c in chunks}) == 3
    digest = chunks[0].content_hash
    assert [c.point_id for c in chunks] == [
        point_id("s", "repeats.md", digest, n) for n in range(3)
    ]


def test_indexes_run_from_zero_and_blank_chunks_are_dropped() -> None:
    elements = [
        _title("Pier"),
        _para(_sentence(1)),
        _blank("   \n  "),
        _title("Cranes"),
        _para(_sentence(2)),
    ]

    chunks = chunk_elements(
        elements, source_key="s", document_key="a.txt", combine_text_under_n_chars=0
    )

    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert all(c.text.strip() for c in chunks)


def test_title_is_the_section_a_chunk_starts_in() -> None:
    elements = [
        _para("Preface text before any heading appears in the document at all."),
        _title("Northern pier"),
        *[_para(_sentence(i)) for i in range(30)],
        _title("Southern pier"),
        _para(_sentence(99)),
    ]

    chunks = chunk_elements(
        elements,
        source_key="s",
        document_key="a.txt",
        max_characters=400,
        new_after_n_chars=300,
        combine_text_under_n_chars=0,
    )

    titles = [c.metadata["title"] for c in chunks]
    assert titles[0] is None
    assert titles[-1] == "Southern pier"
    northern = [c for c in chunks if c.metadata["title"] == "Northern pier"]
    assert len(northern) > 1, "a long section's later chunks keep its title"
    assert not northern[1].text.startswith("Northern pier")


def test_page_numbers_come_from_every_element_of_the_chunk() -> None:
    pdf = "application/pdf"
    elements = [
        _title("Pier", 3, pdf),
        _para(_sentence(1), 3, pdf),
        _para(_sentence(2), 4, pdf),
        _para(_sentence(3), 2, pdf),
    ]

    (chunk,) = chunk_elements(elements, source_key="s", document_key="a.pdf")

    assert chunk.metadata["page_numbers"] == [2, 3, 4]
    assert chunk.metadata["page"] == 2
    assert chunk.metadata["filetype"] == "application/pdf"


def test_unknown_pages_and_type_fall_back() -> None:
    elements = [_para(_sentence(1))]

    (chunk,) = chunk_elements(elements, source_key="s", document_key="dir/Notes.TXT")

    assert chunk.metadata["page_numbers"] == []
    assert chunk.metadata["page"] is None
    assert chunk.metadata["filetype"] == "txt"
    assert chunk.metadata["filename"] == "Notes.TXT"
    assert chunk.metadata["path"] == "dir/Notes.TXT"
    json.dumps(dict(chunk.metadata))


def test_long_text_is_split_within_max_characters() -> None:
    elements = [_para("".join(_sentence(i) for i in range(100)))]

    chunks = chunk_elements(
        elements, source_key="s", document_key="a.txt", max_characters=500, overlap=50
    )

    assert len(chunks) > 5
    assert all(len(c.text) <= 500 for c in chunks)


def test_contradictory_options_are_a_config_error() -> None:
    with pytest.raises(ConfigError, match="overlap"):
        chunk_elements(
            [_para(_sentence(1))],
            source_key="s",
            document_key="a.txt",
            max_characters=100,
            overlap=100,
        )


EMAIL = """\
From: Alice Example <alice@example.com>
To: Bob <bob@example.com>, carol@example.com
Cc: dave@example.com
Subject: Pump maintenance schedule
Date: Tue, 14 May 2024 09:30:00 +0000
Message-ID: <abc123@example.com>
MIME-Version: 1.0
Content-Type: text/plain; charset="utf-8"

Hello Bob,

The ZX-9000 pump needs a new gasket every 500 operating hours. Please schedule the
service for next week.

Regards,
Alice
"""


def test_email_headers_dates_languages_and_source_reach_the_payload(tmp_path: Path) -> None:
    path = tmp_path / "m.eml"
    path.write_text(EMAIL)
    chunks = chunk_elements(
        partition_document(path, document_key="mail/m.eml"),
        source_key="s",
        document_key="mail/m.eml",
    )
    assert chunks
    for chunk in chunks:
        payload = chunk.payload()
        assert payload["source"] == payload["path"] == "mail/m.eml"
        assert payload["sent_from"] == ["Alice Example <alice@example.com>"]
        assert payload["sent_to"] == ["Bob <bob@example.com>", "carol@example.com"]
        assert payload["cc_recipient"] == ["dave@example.com"]
        assert payload["subject"] == "Pump maintenance schedule"
        assert payload["last_modified"].startswith("2024-05-14T09:30:00")
        assert payload["languages"] == ["eng"]
        json.dumps(payload)  # JSON all the way, as the store and the wire need


def test_plain_chunks_carry_source_but_no_empty_optional_keys() -> None:
    (chunk,) = chunk_elements(
        [_title("Pier"), _para(_sentence(1))], source_key="s", document_key="a/b.md"
    )
    assert chunk.metadata["source"] == "a/b.md"
    assert not {"sent_from", "subject", "last_modified"} & set(chunk.metadata)
