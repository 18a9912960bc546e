"""A BEIR-format dataset as a source: one document per line of ``corpus.jsonl``.

The layout is the one BEIR and MTEB use::

    DATASET_DIR/
        corpus.jsonl     {"_id": "4983", "title": "...", "text": "..."} per line
        queries.jsonl    {"_id": "1", "text": "..."} per line
        qrels/test.tsv   query-id <TAB> corpus-id <TAB> score (header line optional)
        qrels.jsonl      or LIMIT's {"query-id": ..., "corpus-id": ..., "score": 1} per line

The connector lists the corpus records as :class:`~tribrid.connectors.base.TextDocument`
items: they go through the normal pipeline (chunking, encoding, the ledger) without a
parser, and the ledger keeps them, so evaluating again never re-embeds. Queries and
qrels are read by :func:`read_queries` and :func:`read_qrels`.

Every malformed line is refused with a :class:`~tribrid.errors.ConnectorError` that names
the file and the line.

Example:
    >>> connector = BeirCorpusConnector("../shared/data/scifact")   # doctest: +SKIP
    >>> queries = read_queries("../shared/data/scifact")            # doctest: +SKIP
    >>> qrels = read_qrels("../shared/data/scifact", "test")        # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tribrid.connectors.base import ConnectorOptions, ListedItem, TextDocument
from tribrid.errors import ConnectorError

CORPUS_FILE = "corpus.jsonl"
QUERIES_FILE = "queries.jsonl"
QRELS_DIR = "qrels"
# LIMIT ships its (only, test) qrels as one JSON-lines file beside the corpus.
FLAT_QRELS_FILE = "qrels.jsonl"

Qrels = dict[str, dict[str, int]]
"""``{query id: {document id: relevance}}``; relevance > 0 means relevant."""


def dataset_root(path: str | os.PathLike[str]) -> Path:
    """The dataset folder (the one holding ``corpus.jsonl``), checked to exist.

    Raises:
        ConnectorError: The folder or its ``corpus.jsonl`` is missing.
    """
    root = Path(path).expanduser()
    if root.is_file() and root.name == CORPUS_FILE:
        root = root.parent
    if not root.is_dir():
        raise ConnectorError(
            f"dataset folder {str(root)!r} does not exist; pass the folder that holds "
            f"{CORPUS_FILE}, {QUERIES_FILE} and {QRELS_DIR}/"
        )
    if not (root / CORPUS_FILE).is_file():
        raise ConnectorError(
            f"{root} has no {CORPUS_FILE}; a BEIR dataset folder holds {CORPUS_FILE} "
            f"(one {{'_id', 'title', 'text'}} object per line), {QUERIES_FILE} and qrels"
        )
    return root.resolve()


def _json_lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` for every non-blank line of a JSON-lines file."""
    try:
        handle = path.open(encoding="utf-8")
    except OSError as e:
        raise ConnectorError(f"cannot read {path}: {e.strerror or e}") from e
    with handle:
        try:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as e:
                    raise ConnectorError(
                        f"{path}:{number}: not valid JSON ({e.msg} at column {e.colno}); "
                        "each line must be one JSON object"
                    ) from e
                if not isinstance(record, dict):
                    raise ConnectorError(
                        f"{path}:{number}: expected a JSON object, got {type(record).__name__}"
                    )
                yield number, record
        except UnicodeDecodeError as e:
            raise ConnectorError(f"{path}: not UTF-8 text ({e}); re-save it as UTF-8") from e


def _string_field(record: dict[str, Any], name: str, where: str, *, required: bool) -> str:
    value = record.get(name)
    if value is None:
        if required:
            raise ConnectorError(f"{where}: missing field {name!r}")
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ConnectorError(
            f"{where}: field {name!r} must be a string, got {type(value).__name__}"
        )
    return str(value)


class BeirCorpusConnector:
    """Lists the records of a BEIR ``corpus.jsonl`` as documents keyed by their ``_id``.

    Each record becomes a :class:`TextDocument` with the record's ``title`` and ``text``;
    its key is the ``_id``, so search hits map back to the qrels through the payload's
    ``document_key``. The file is streamed line by line.

    Example:
        >>> for doc in BeirCorpusConnector("data/scifact").list_documents():  # doctest: +SKIP
        ...     print(doc.key, doc.title)

    Args:
        dataset: The dataset folder, or its ``corpus.jsonl``.
        source_key: Stable key of the source; by default ``beir:<resolved corpus path>``.

    Raises:
        ConnectorError: The folder or its corpus is missing.
    """

    def __init__(self, dataset: str | os.PathLike[str], *, source_key: str | None = None) -> None:
        self._root = dataset_root(dataset)
        self._corpus = self._root / CORPUS_FILE
        self._source_key = source_key or f"beir:{self._corpus.as_posix()}"

    @classmethod
    def from_location(cls, location: str, options: ConnectorOptions) -> BeirCorpusConnector:
        """The connector of the dataset folder ``location`` (only ``source_key`` applies)."""
        return cls(location, source_key=options.source_key)

    @property
    def root(self) -> Path:
        """The dataset folder."""
        return self._root

    @property
    def source_key(self) -> str:
        """Stable key of this source."""
        return self._source_key

    @property
    def location(self) -> str:
        """Where the corpus is now: ``beir:<resolved corpus path>`` (its key may differ)."""
        return f"beir:{self._corpus.as_posix()}"

    def list_documents(self) -> Iterator[ListedItem]:
        """Yield one :class:`TextDocument` per corpus record.

        Raises:
            ConnectorError: A line is not a JSON object, lacks ``_id`` or ``text``, has an
                ``_id`` that cannot be a document key, or repeats an earlier ``_id``.
        """
        # The file's mtime stands for every record's: when the file changes, each record
        # is compared by its content hash (cheap, no file read) and only changed ones
        # are chunked and encoded again.
        mtime_ns = self._corpus.stat().st_mtime_ns
        seen: dict[str, int] = {}
        for number, record in _json_lines(self._corpus):
            where = f"{self._corpus}:{number}"
            doc_id = _string_field(record, "_id", where, required=True)
            text = _string_field(record, "text", where, required=True)
            title = _string_field(record, "title", where, required=False)
            if doc_id in seen:
                raise ConnectorError(
                    f"{where}: _id {doc_id!r} repeats the one on line {seen[doc_id]}; "
                    "document ids must be unique"
                )
            seen[doc_id] = number
            if not (title.strip() or text.strip()):
                raise ConnectorError(f"{where}: document {doc_id!r} has no title and no text")
            try:
                yield TextDocument(
                    source_key=self._source_key,
                    key=doc_id,
                    path=self._corpus,
                    size=len(title.encode()) + len(text.encode()),
                    mtime_ns=mtime_ns,
                    title=title,
                    text=text,
                )
            except ValueError as e:
                raise ConnectorError(
                    f"{where}: _id {doc_id!r} cannot be a document key ({e}); "
                    "ids must not start with '/' or contain a '..' path segment"
                ) from e


def read_queries(dataset: str | os.PathLike[str]) -> dict[str, str]:
    """``{query id: query text}`` from the dataset's ``queries.jsonl``.

    Raises:
        ConnectorError: The file is missing, or a line is malformed or repeats an id.
    """
    path = dataset_root(dataset) / QUERIES_FILE
    if not path.is_file():
        raise ConnectorError(
            f"{path} does not exist; a BEIR dataset needs {QUERIES_FILE} with one "
            "{'_id', 'text'} object per line"
        )
    queries: dict[str, str] = {}
    for number, record in _json_lines(path):
        where = f"{path}:{number}"
        query_id = _string_field(record, "_id", where, required=True)
        text = _string_field(record, "text", where, required=True)
        if query_id in queries:
            raise ConnectorError(f"{where}: query _id {query_id!r} appears twice")
        if not text.strip():
            raise ConnectorError(f"{where}: query {query_id!r} has empty text")
        queries[query_id] = text
    return queries


def qrels_path(dataset: str | os.PathLike[str], split: str) -> Path | None:
    """The qrels file of ``split``, or ``None`` when the dataset has none.

    Looks for ``qrels/<split>.tsv``, then ``qrels/<split>.jsonl``, then (for ``test``
    only) LIMIT's flat ``qrels.jsonl``.
    """
    root = dataset_root(dataset)
    candidates = [root / QRELS_DIR / f"{split}.tsv", root / QRELS_DIR / f"{split}.jsonl"]
    if split == "test":
        candidates.append(root / FLAT_QRELS_FILE)
    return next((c for c in candidates if c.is_file()), None)


def available_splits(dataset: str | os.PathLike[str]) -> list[str]:
    """The splits the dataset has qrels for, sorted."""
    root = dataset_root(dataset)
    splits = {p.stem for p in (root / QRELS_DIR).glob("*") if p.suffix in (".tsv", ".jsonl")}
    if (root / FLAT_QRELS_FILE).is_file():
        splits.add("test")
    return sorted(splits)


def read_qrels(dataset: str | os.PathLike[str], split: str = "test") -> Qrels:
    """Relevance judgements of one split: ``{query id: {document id: relevance}}``.

    Accepts BEIR's TSV (``query-id``, ``corpus-id``, ``score``, tab-separated, with an
    optional header; ids may contain spaces) and JSON lines with the same three keys.

    Raises:
        ConnectorError: The split has no qrels file, or a line is malformed.
    """
    path = qrels_path(dataset, split)
    if path is None:
        have = available_splits(dataset)
        raise ConnectorError(
            f"{dataset_root(dataset)} has no qrels for split {split!r} (looked for "
            f"{QRELS_DIR}/{split}.tsv, {QRELS_DIR}/{split}.jsonl"
            + (f", {FLAT_QRELS_FILE}" if split == "test" else "")
            + f"); splits with qrels: {have or 'none'}"
        )
    rows = _jsonl_qrels(path) if path.suffix == ".jsonl" else _tsv_qrels(path)
    qrels: Qrels = {}
    for where, query_id, doc_id, score in rows:
        if not query_id or not doc_id:
            raise ConnectorError(f"{where}: empty query-id or corpus-id")
        judged = qrels.setdefault(query_id, {})
        if doc_id in judged and judged[doc_id] != score:
            raise ConnectorError(
                f"{where}: ({query_id!r}, {doc_id!r}) was already judged {judged[doc_id]}, "
                f"now {score}; keep one judgement per pair"
            )
        judged[doc_id] = score
    if not qrels:
        raise ConnectorError(f"{path} holds no judgements")
    return qrels


def _score(value: object, where: str) -> int:
    try:
        number = float(str(value).strip())
    except ValueError:
        raise ConnectorError(f"{where}: score {value!r} is not a number") from None
    if not number.is_integer():
        raise ConnectorError(f"{where}: score {value!r} must be a whole number (graded relevance)")
    return int(number)


def _tsv_qrels(path: Path) -> Iterator[tuple[str, str, str, int]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ConnectorError(f"cannot read {path}: {e}") from e
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        # Split on tabs only: LIMIT's corpus ids are person names with spaces.
        parts = line.rstrip("\r\n").split("\t")
        if number == 1 and parts[0].strip().lower() in ("query-id", "query_id", "qid"):
            continue
        if len(parts) == 4:  # TREC style: qid, iteration, docid, score
            parts = [parts[0], parts[2], parts[3]]
        if len(parts) != 3:
            raise ConnectorError(
                f"{where}: expected 3 tab-separated fields (query-id, corpus-id, score), "
                f"got {len(parts)}"
            )
        yield where, parts[0].strip(), parts[1].strip(), _score(parts[2], where)


def _jsonl_qrels(path: Path) -> Iterator[tuple[str, str, str, int]]:
    for number, record in _json_lines(path):
        where = f"{path}:{number}"
        query_id = _string_field(record, "query-id", where, required=True)
        doc_id = _string_field(record, "corpus-id", where, required=True)
        yield where, query_id, doc_id, _score(record.get("score", 1), where)


__all__ = [
    "BeirCorpusConnector",
    "Qrels",
    "available_splits",
    "dataset_root",
    "qrels_path",
    "read_qrels",
    "read_queries",
]
