"""Hostile folders: every odd entry ends indexed or failed with its own reason, and no run hangs.

The folders are generated here (nothing big is committed): names that are not text,
special files, loops, a 2 GB sparse file, documents whose zip parts inflate to
gigabytes, a PDF nested hundreds of thousands of levels deep, a file rewritten while it
is parsed and a folder this user may not read. Parsing is real (the parse pool's worker
processes, with their time and memory limits); the models are the hashing fakes, since
these tests are about the files, not the vectors.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytest

from tests.fakes import fake_encoders
from tests.support.ingestion import FolderIndex, InlineParser
from tribrid.connectors.archives import ArchiveLimits
from tribrid.connectors.base import file_sha256
from tribrid.encoders import EncoderSet
from tribrid.factory import collection_schema
from tribrid.ingestion.base import ParseOutcome
from tribrid.ingestion.parse import DocumentParser, ParseJob, ParseOptions
from tribrid.ingestion.parse_pool import ParsePool
from tribrid.ingestion.pipeline import SyncReport
from tribrid.ledger import SqlLedger
from tribrid.settings import Settings
from tribrid.store import open_store

PROSE = "Lighthouse keepers trim the wick at dusk and log every passing ship. " * 12
GIB = 1 << 30

# A run that takes longer than this on these few files has hung.
RUN_DEADLINE_S = 600


@pytest.fixture(scope="module")
def encoders() -> EncoderSet:
    return fake_encoders()


@pytest.fixture(scope="module")
def pool() -> Iterator[ParsePool]:
    settings = Settings()
    with ParsePool.from_settings(settings.parsing, settings.chunking) as parse_pool:
        yield parse_pool


def _index(root: Path, data: Path, encoders: EncoderSet, parser: DocumentParser) -> FolderIndex:
    schema = collection_schema(Settings(), encoders)
    ledger = SqlLedger(f"sqlite:///{data / 'ledger.db'}")
    store = open_store("qdrant", schema, url=":memory:")
    return FolderIndex(root, ledger, store, encoders, parser=parser)


def _sync_within_deadline(index: FolderIndex) -> SyncReport:
    """The sync, on a thread: the test fails (instead of hanging) if it does not end."""
    result: list[SyncReport | BaseException] = []

    def run() -> None:
        try:
            result.append(index.sync())
        except BaseException as error:  # handed to the test thread
            result.append(error)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(RUN_DEADLINE_S)
    assert not worker.is_alive(), f"the sync did not end within {RUN_DEADLINE_S} s"
    if isinstance(result[0], BaseException):
        raise result[0]
    return result[0]


def _failures(report: SyncReport) -> dict[str, tuple[str, str]]:
    return {f.key: (f.kind, f.message) for f in report.failures}


@pytest.mark.slow
def test_odd_names_and_special_files_are_indexed_or_refused_by_name(
    tmp_path: Path, encoders: EncoderSet, pool: ParsePool
) -> None:
    # A short folder name: a Unix socket's path must fit in 107 bytes.
    root = Path(tempfile.mkdtemp(prefix="hostile-"))
    listening = socket.socket(socket.AF_UNIX)
    try:
        for name in ("line\nbreak.txt", "-rf.txt", "--help.md", "tab\tand space.txt"):
            (root / name).write_text(f"{PROSE} {name!r}")
        # A Latin-1 name from an old share: not valid UTF-8.
        with open(os.path.join(os.fsencode(root), b"caf\xe9 menu.txt"), "wb") as latin1:
            latin1.write(PROSE.encode())
        os.mkfifo(root / "pipe.txt")
        listening.bind(str(root / "sock.txt"))
        if os.geteuid() == 0:
            os.mknod(root / "null.txt", stat.S_IFCHR | 0o666, os.makedev(1, 3))
        os.symlink("loop.txt", root / "loop.txt")  # a symlink to itself
        (root / "sub").mkdir()
        os.symlink("..", root / "sub" / "up")  # a folder loop (a followed symlink)
        with (root / "sparse.txt").open("wb") as handle:
            handle.truncate(2 * GIB)  # 2 GB that take no disk space

        index = _index(root, tmp_path, encoders, pool)
        report = _sync_within_deadline(index)
        failures = _failures(report)
        indexed = {k for k, s in index.states().items() if s.status == "indexed"}
        assert indexed == {"line\nbreak.txt", "-rf.txt", "--help.md", "tab\tand space.txt"}
        assert failures["caf\\xe9 menu.txt"][0] == "bad_name"
        assert "not valid UTF-8; rename it" in failures["caf\\xe9 menu.txt"][1]
        assert failures["pipe.txt"][0] == "not_a_file"
        assert "named pipe (FIFO)" in failures["pipe.txt"][1]
        assert "socket" in failures["sock.txt"][1]
        if os.geteuid() == 0:
            assert "character device" in failures["null.txt"][1]
        assert failures["loop.txt"][0] == "unreadable"
        assert "looping symlink" in failures["loop.txt"][1]
        assert failures["sparse.txt"][0] == "too_large"
        assert "TRIBRID_PARSING__MAX_FILE_MB" in failures["sparse.txt"][1]
        assert report.counts.indexed == 4 and report.counts.failed == len(failures)
        # The names survive as keys: a hit on the newline name finds that file.
        assert index.paths("passing ship 'line\\nbreak.txt'", k=5)
        # Settled: the next sync reads nothing again.
        again = _sync_within_deadline(index)
        assert again.counts.indexed == 0 and again.counts.chunks_embedded == 0
        # (Refusals of the listing are reported again each run; they cost no reading.)
        assert again.counts.unchanged + again.counts.failed == 4 + len(failures)
        index.store.close()
        index.ledger.close()
    finally:
        listening.close()
        shutil.rmtree(root, ignore_errors=True)


def _deflate_repeating(head: bytes, filler: bytes, count: int, tail: bytes) -> tuple[bytes, int]:
    """A raw deflate stream of ``head + filler * count + tail``, and its CRC-32, made fast.

    After a full flush the compressor forgets what came before, so every copy of
    ``filler`` compresses to the same bytes: one compressed copy is repeated instead of
    compressing gigabytes.
    """
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    out = [compressor.compress(head) + compressor.flush(zlib.Z_FULL_FLUSH)]
    piece = compressor.compress(filler) + compressor.flush(zlib.Z_FULL_FLUSH)
    assert compressor.compress(filler) + compressor.flush(zlib.Z_FULL_FLUSH) == piece
    out.append(piece * count)
    out.append(compressor.compress(tail) + compressor.flush(zlib.Z_FINISH))
    crc = zlib.crc32(head)
    for _ in range(count + 1):  # the filler was compressed count + 1 times above
        crc = zlib.crc32(filler, crc)
    return b"".join(out), zlib.crc32(tail, crc)


def _bomb_package(template: Path, target: Path, part: str, size: int) -> None:
    """Copy a DOCX/XLSX, its ``part`` replaced by XML that inflates to ``size`` bytes.

    Written by hand (``zipfile`` cannot take pre-compressed data): local headers, the
    central directory and its end record, all under 4 GiB so no zip64 is needed.
    """
    with zipfile.ZipFile(template) as source:
        parts = [(info.filename, source.read(info.filename)) for info in source.infolist()]
    blob = bytearray()
    central = bytearray()
    for name, data in parts:
        if name == part:
            open_tag, close_tag = data.rsplit(b"</", 1)
            filler = b"<!-- " + b"x" * (1 << 20) + b" -->"
            count = size // len(filler)
            packed, crc = _deflate_repeating(open_tag, filler, count, b"</" + close_tag)
            full = len(open_tag) + len(filler) * (count + 1) + len(close_tag) + 2
        else:
            compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
            packed = compressor.compress(data) + compressor.flush()
            crc, full = zlib.crc32(data), len(data)
        encoded = name.encode()
        offset = len(blob)
        fields = (20, 0, 8, 0, 0x21, crc, len(packed), full, len(encoded))
        blob += struct.pack("<IHHHHHIIIHH", 0x04034B50, *fields, 0) + encoded + packed
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, *fields, 0, 0, 0, 0, 0, offset)
        central += encoded
    end = struct.pack(
        "<IHHHHIIH", 0x06054B50, 0, 0, len(parts), len(parts), len(central), len(blob), 0
    )
    target.write_bytes(bytes(blob + central + end))


@pytest.mark.slow
def test_documents_whose_parts_inflate_to_gigabytes_are_refused_unopened(
    tmp_path: Path, encoders: EncoderSet, pool: ParsePool
) -> None:
    import docx  # type: ignore[import-untyped]
    import openpyxl

    templates = tmp_path / "templates"
    templates.mkdir()
    document = docx.Document()
    document.add_paragraph("A harmless looking note about lighthouses.")
    document.save(templates / "note.docx")
    book = openpyxl.Workbook()
    book.active.append(["ship", "arrived"])
    book.save(templates / "ledger.xlsx")
    root = tmp_path / "docs"
    root.mkdir()
    _bomb_package(templates / "note.docx", root / "note.docx", "word/document.xml", 3 * GIB)
    _bomb_package(templates / "ledger.xlsx", root / "ledger.xlsx", "xl/worksheets/sheet1.xml", GIB)
    (root / "fine.docx").write_bytes((templates / "note.docx").read_bytes())
    # Small on disk, gigabytes inflated: what the parser would have held in memory.
    for name in ("note.docx", "ledger.xlsx"):
        with zipfile.ZipFile(root / name) as package:
            inflated = sum(i.file_size for i in package.infolist())
        assert inflated >= GIB and (root / name).stat().st_size < 4 << 20

    index = _index(root, tmp_path, encoders, pool)
    started = time.monotonic()
    report = _sync_within_deadline(index)
    took = time.monotonic() - started
    failures = _failures(report)
    assert set(failures) == {"note.docx", "ledger.xlsx"}, failures
    kind, message = failures["note.docx"]
    assert kind == "too_large"
    assert "part 'word/document.xml' inflates" in message and "compression bomb" in message
    assert "TRIBRID_ARCHIVES__MAX_RATIO" in message
    assert "xl/worksheets/sheet1.xml" in failures["ledger.xlsx"][1]
    assert index.states()["fine.docx"].status == "indexed"
    # Refused from the headers: nowhere near the time inflating gigabytes takes.
    assert took < RUN_DEADLINE_S
    index.store.close()
    index.ledger.close()


def test_package_limits_are_the_archive_settings(tmp_path: Path) -> None:
    """A genuine document over a lowered total limit is refused naming that setting."""
    from tribrid.errors import ParseError
    from tribrid.ingestion.parsing import partition_with_page_count

    path = tmp_path / "plain.docx"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as package:
        package.writestr("word/document.xml", os.urandom(3 << 20))  # incompressible
    with pytest.raises(ParseError) as refused:
        partition_with_page_count(
            path, document_key="plain.docx", limits=ArchiveLimits(max_total_mb=2)
        )
    assert refused.value.kind == "too_large"
    assert "TRIBRID_ARCHIVES__MAX_TOTAL_MB" in str(refused.value)


def _deep_pdf(path: Path, depth: int) -> None:
    """A one-page PDF whose page dictionary holds arrays nested ``depth`` levels deep."""
    nested = b"[" * depth + b"]" * depth
    content = b"BT /F1 12 Tf 72 720 Td (Deep) Tj ET"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Deep "
        + nested
        + b" >>",
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    path.write_bytes(bytes(out))


@pytest.mark.slow
def test_a_pdf_nested_deeply_fails_with_a_reason(
    tmp_path: Path, encoders: EncoderSet, pool: ParsePool
) -> None:
    root = tmp_path / "docs"
    root.mkdir()
    _deep_pdf(root / "deep.pdf", 200_000)
    (root / "fine.txt").write_text(PROSE)
    index = _index(root, tmp_path, encoders, pool)
    report = _sync_within_deadline(index)
    failures = _failures(report)
    assert set(failures) == {"deep.pdf"}
    kind, message = failures["deep.pdf"]
    assert kind in {"corrupt", "crashed", "timeout"} and message.startswith("deep.pdf: ")
    assert index.states()["fine.txt"].status == "indexed"
    index.store.close()
    index.ledger.close()


class _RewritingParser(InlineParser):
    """Parses in this process, rewriting one file just before it is parsed (once)."""

    def __init__(self, target: Path, rewrite: Callable[[Path], None]) -> None:
        super().__init__(ParseOptions(memory_limit_mb=None))
        self.target = target
        self.rewrite: Callable[[Path], None] | None = rewrite

    def imap(self, jobs: Iterable[ParseJob]) -> Iterator[tuple[ParseJob, ParseOutcome]]:
        for job in jobs:
            if job.path == self.target and self.rewrite is not None:
                self.rewrite, rewrite = None, self.rewrite
                rewrite(job.path)
            yield from super().imap([job])


def test_a_file_changed_while_it_is_parsed_is_read_again_until_it_holds_still(
    tmp_path: Path, encoders: EncoderSet
) -> None:
    root = tmp_path / "docs"
    root.mkdir()
    target = root / "log.txt"
    target.write_text("The first draft mentions the old harbour crane. " * 20)

    def rewrite(path: Path) -> None:
        path.write_text("The rewritten draft describes the new container gantry. " * 30)
        stat_now = path.stat()  # a new mtime, as a real writer would leave
        os.utime(path, ns=(stat_now.st_atime_ns, stat_now.st_mtime_ns + 1_000_000_000))

    index = _index(root, tmp_path, encoders, _RewritingParser(target, rewrite))
    first = index.sync()
    assert first.counts.failed == 0
    # The first sync planned on the old bytes but parsed the new: the next one must
    # notice (the file's mtime is not the one recorded) and settle on the new bytes.
    second = index.sync()
    assert second.counts.indexed + second.counts.unchanged == 1
    state = index.states()["log.txt"]
    assert state.content_hash == file_sha256(target)
    assert (state.size, state.mtime_ns) == (target.stat().st_size, target.stat().st_mtime_ns)
    texts = [p.payload["text"] for p in index.store.retrieve(list(index.store.ids()))]
    assert texts and all("container gantry" in t for t in texts)
    third = index.sync()
    assert third.counts.unchanged == 1 and third.counts.chunks_embedded == 0
    index.store.close()
    index.ledger.close()


_AS_NOBODY = """
import json, os, sys
from pathlib import Path
from tests.fakes import fake_encoders
from tests.support.ingestion import FolderIndex
from tribrid.factory import collection_schema
from tribrid.ledger import SqlLedger
from tribrid.settings import Settings
from tribrid.store import open_store

root, data = Path(sys.argv[1]), Path(sys.argv[2])
encoders = fake_encoders()
ledger = SqlLedger(f"sqlite:///{data / 'ledger.db'}")
store = open_store("edge", collection_schema(Settings(), encoders), path=data / "store")
index = FolderIndex(root, ledger, store, encoders)
steps = []
for step in ("readable", "locked", "unlocked"):
    if step == "locked":
        os.chmod(root / "locked", 0)
    if step == "unlocked":
        os.chmod(root / "locked", 0o755)
    report = index.sync()
    steps.append({
        "indexed": report.counts.indexed,
        "unchanged": report.counts.unchanged,
        "deleted": report.counts.deleted,
        "failures": {f.key: [f.kind, f.message] for f in report.failures},
        "live": sorted(index.states()),
        "points": index.store.count(),
    })
store.close()
ledger.close()
print(json.dumps(steps))
"""


@pytest.mark.slow
def test_a_folder_this_user_cannot_read_fails_and_keeps_what_was_indexed_below_it(
    tmp_path: Path,
) -> None:
    """Run as an ordinary user: root reads any folder, so the test drops to ``nobody``."""
    setpriv = shutil.which("setpriv")
    as_user: list[str] = []
    if os.geteuid() == 0:
        if setpriv is None:
            pytest.skip("running as root without setpriv: cannot drop to an ordinary user")
        as_user = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]
    work = Path(tempfile.mkdtemp(prefix="tribrid-nobody-"))
    try:
        root, data = work / "docs", work / "data"
        (root / "locked").mkdir(parents=True)
        data.mkdir()
        (root / "open.txt").write_text(PROSE)
        (root / "locked" / "inside.txt").write_text("The keeper's diary of the winter storms. " * 9)
        if as_user:
            for path in (work, root, root / "locked", data, *root.rglob("*.txt")):
                os.chown(path, 65534, 65534)
        repo = Path(__file__).resolve().parents[2]
        env = {**os.environ, "HOME": str(work), "PYTHONPATH": str(repo)}
        done = subprocess.run(
            [*as_user, sys.executable, "-c", _AS_NOBODY, str(root), str(data)],
            cwd=repo,
            env=env,
            capture_output=True,
            text=True,
            timeout=RUN_DEADLINE_S,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        readable, locked, unlocked = json.loads(done.stdout.strip().splitlines()[-1])
        assert readable["indexed"] == 2 and readable["live"] == ["locked/inside.txt", "open.txt"]
        # Locked: the folder fails with its reason; what was indexed below it stays.
        kind, message = locked["failures"]["locked"]
        assert kind == "unreadable" and "cannot list folder: Permission denied" in message
        assert locked["deleted"] == 0 and locked["points"] == readable["points"]
        assert "locked/inside.txt" in locked["live"]
        # Readable again: nothing to redo.
        assert unlocked["indexed"] == 0 and unlocked["failures"] == {}
        assert unlocked["points"] == readable["points"]
    finally:
        for path in work.rglob("*"):
            if path.is_dir():
                os.chmod(path, 0o755)
        shutil.rmtree(work, ignore_errors=True)
