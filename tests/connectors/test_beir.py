"""The BEIR connector: corpus records as documents, queries, and qrels in both formats."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tribrid.connectors import CONNECTORS, BeirCorpusConnector, TextDocument
from tribrid.connectors.beir import available_splits, read_qrels, read_queries
from tribrid.errors import ConnectorError
from tribrid.ingestion.parse import ParseJob, ParseOptions, TextChunker, parse_and_chunk

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"


def _write_jsonl(path: Path, rows: list[object]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    _write_jsonl(
        tmp_path / "corpus.jsonl",
        [
            {"_id": "d1", "title": "Otters", "text": "River otters eat fish."},
            {"_id": "Geneva Durben", "title": "", "text": "Geneva likes quokkas."},
            {"_id": 7, "text": "A numeric id."},
        ],
    )
    _write_jsonl(tmp_path / "queries.jsonl", [{"_id": "q1", "text": "what do otters eat"}])
    (tmp_path / "qrels").mkdir()
    (tmp_path / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\tGeneva Durben\t0\n"
    )
    return tmp_path


def test_records_become_text_documents_keyed_by_id(dataset: Path) -> None:
    connector = BeirCorpusConnector(dataset)
    docs = list(connector.list_documents())
    assert [d.key for d in docs] == ["d1", "Geneva Durben", "7"]
    first = docs[0]
    assert isinstance(first, TextDocument)
    assert (first.title, first.text) == ("Otters", "River otters eat fish.")
    assert connector.source_key == f"beir:{(dataset / 'corpus.jsonl').resolve().as_posix()}"
    # The hash is the record's, so editing another line never re-encodes this one.
    assert (
        first.content_hash == next(iter(BeirCorpusConnector(dataset).list_documents())).content_hash
    )
    assert CONNECTORS["beir"] is BeirCorpusConnector


def test_text_records_are_chunked_without_parsing(dataset: Path) -> None:
    doc = next(iter(BeirCorpusConnector(dataset).list_documents()))
    assert isinstance(doc, TextDocument)
    job = ParseJob(doc.source_key, doc.key, doc.path, text=doc.text, title=doc.title)
    # A small chunk size forces several chunks: each still opens with the title.
    long_job = ParseJob(
        doc.source_key, doc.key, doc.path, text="Otters swim. " * 60, title="Otters"
    )
    options = ParseOptions(max_characters=300, new_after_n_chars=250, overlap=0)
    (outcome,) = [o for _, o in TextChunker(options).imap([long_job])]
    assert not hasattr(outcome, "kind"), outcome
    assert len(outcome.chunks) > 1
    assert all(c.text.startswith("Otters\n\n") and len(c.text) <= 300 for c in outcome.chunks)
    # The pool's in-process path does the same for a text job: corpus.jsonl is never parsed.
    parsed = parse_and_chunk(job, ParseOptions())
    assert [c.text for c in parsed.chunks] == ["Otters\n\nRiver otters eat fish."]
    assert parsed.chunks[0].metadata["filetype"] == "text/plain"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "corpus.jsonl:2: not valid JSON"),
        ('["a"]', "corpus.jsonl:2: expected a JSON object"),
        ('{"title": "t", "text": "x"}', "corpus.jsonl:2: missing field '_id'"),
        ('{"_id": "d1", "text": "again"}', "corpus.jsonl:2: _id 'd1' repeats the one on line 1"),
        ('{"_id": "../x", "text": "x"}', "corpus.jsonl:2: _id '../x' cannot be a document key"),
        ('{"_id": "d2", "text": {"a": 1}}', "corpus.jsonl:2: field 'text' must be a string"),
    ],
)
def test_malformed_corpus_lines_name_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    (tmp_path / "corpus.jsonl").write_text('{"_id": "d1", "text": "ok"}\n' + line + "\n")
    with pytest.raises(ConnectorError, match=message.replace("(", r"\(").replace(")", r"\)")):
        list(BeirCorpusConnector(tmp_path).list_documents())


def test_missing_corpus_says_what_a_dataset_holds(tmp_path: Path) -> None:
    with pytest.raises(ConnectorError, match=r"has no corpus\.jsonl"):
        BeirCorpusConnector(tmp_path)


def test_qrels_tsv_with_header_and_spaces_in_ids(dataset: Path) -> None:
    assert read_qrels(dataset, "test") == {"q1": {"d1": 1, "Geneva Durben": 0}}
    assert read_queries(dataset) == {"q1": "what do otters eat"}
    assert available_splits(dataset) == ["test"]


def test_qrels_jsonl_limit_style(tmp_path: Path) -> None:
    _write_jsonl(tmp_path / "corpus.jsonl", [{"_id": "a", "text": "x"}])
    _write_jsonl(
        tmp_path / "qrels.jsonl",
        [
            {"query-id": "query_0", "corpus-id": "Geneva Durben", "score": 1},
            {"query-id": "query_0", "corpus-id": "Dorathea Bastress", "score": 1},
        ],
    )
    assert read_qrels(tmp_path, "test") == {"query_0": {"Geneva Durben": 1, "Dorathea Bastress": 1}}
    with pytest.raises(
        ConnectorError, match=r"no qrels for split 'train'.*splits with qrels: \['test'\]"
    ):
        read_qrels(tmp_path, "train")


def test_malformed_qrels_name_file_and_line(dataset: Path) -> None:
    (dataset / "qrels" / "dev.tsv").write_text("q1\td1\n")
    with pytest.raises(ConnectorError, match=r"dev.tsv:1: expected 3 tab-separated fields"):
        read_qrels(dataset, "dev")
    (dataset / "qrels" / "dev.tsv").write_text("q1\td1\thigh\n")
    with pytest.raises(ConnectorError, match=r"dev.tsv:1: score 'high' is not a number"):
        read_qrels(dataset, "dev")


@pytest.mark.skipif(not SHARED.is_dir(), reason="the shared datasets are not beside the repo")
def test_shared_datasets_parse() -> None:
    limit = read_qrels(SHARED / "limit-small", "test")
    assert len(limit) == 1000 and all(len(d) == 2 for d in limit.values())
    scifact = read_qrels(SHARED / "scifact", "train")
    assert len(scifact) == 809
    assert sum(1 for _ in BeirCorpusConnector(SHARED / "limit-small").list_documents()) == 46
