"""Compressed files and archives: what is inside them, read safely and within limits.

Two kinds of file hold other files:

* a **compressed file** (``.gz``, ``.bz2``, ``.xz``, ``.zst``) holds one: it stays one
  document, keyed and found by its own path; the parse stage decompresses it
  (:func:`decompress_file`) and parses what it holds by that file's own type;
* an **archive** (``.zip``, ``.tar``, ``.tar.gz``/``.tgz``, ``.tar.bz2``, ``.tar.xz``,
  ``.tar.zst``) holds many: each member is a document of its own, keyed
  ``archive.zip!/dir/member.pdf`` (:func:`member_key`), and archives inside archives nest
  (``a.zip!/b.tar!/c.md``) up to ``max_depth`` levels.

:func:`scan_archive` lists an archive's members with the SHA-256 of their bytes (so a
changed archive re-indexes only the members that changed); :func:`extract_member`
writes one member's bytes to a private folder for the parser.

**Safe by construction.** Nothing here extracts an archive: bytes are streamed, in
blocks, into a hash or into one file whose name is chosen here (``member.pdf``), in a
folder the caller owns. Member names with ``..``, absolute paths, links and devices are
refused and never opened. Every decompressed byte is counted against
:class:`ArchiveLimits`: bytes per member and per archive, the compression ratio, the
number of members and the nesting depth. A limit hit raises
:class:`~tribrid.errors.ParseError` whose message names the limit and its setting; the
limits that only a hostile archive reaches (ratio, total bytes, member count) raise
:class:`ArchiveLimitError`, which fails the whole archive.

Example:
    >>> entries = scan_archive(Path("mail.zip"), key="mail.zip", limits=ArchiveLimits())
    >>> [e.key for e in entries if e.failure is None]
    ['mail.zip!/notes/a.md', 'mail.zip!/report.pdf']
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import lzma
import re
import stat
import struct
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path, PurePosixPath
from typing import IO, Any, Final, cast
from urllib.parse import quote

from tribrid.connectors.base import SourceDocument
from tribrid.errors import ConfigError, ParseError

#: Between an archive's key and the path of a member inside it.
MEMBER_SEPARATOR: Final = "!/"

# Failure kinds (values of tribrid.ingestion.base.FailureKind, which sits above this room).
TOO_LARGE: Final = "too_large"
TOO_MANY_MEMBERS: Final = "too_many_members"
TOO_DEEP: Final = "too_deep"
UNSAFE_MEMBER: Final = "unsafe_member"
ENCRYPTED: Final = "encrypted"
CORRUPT: Final = "corrupt"
UNREADABLE: Final = "unreadable"
UNSUPPORTED_TYPE: Final = "unsupported_type"

_MIB: Final = 1 << 20
_BLOCK: Final = 64 * 1024
# Below this many decompressed bytes the ratio is not judged: a short, repetitive text
# compresses far beyond any sane limit and is harmless.
_RATIO_FLOOR: Final = _MIB
# Nested archives are held here in memory up to this size, and spill to a private
# temporary file beyond it.
_SPOOL_IN_MEMORY: Final = _MIB
_SAFE_SUFFIX: Final = re.compile(r"\.[a-z0-9]{1,10}")


class Compression(StrEnum):
    """A single-file compression format."""

    GZIP = "gzip"
    BZIP2 = "bzip2"
    XZ = "xz"
    ZSTD = "zstd"


class ArchiveFormat(StrEnum):
    """A container format."""

    ZIP = "zip"
    TAR = "tar"


_COMPRESSION_SUFFIXES: Final = {
    ".gz": Compression.GZIP,
    ".bz2": Compression.BZIP2,
    ".xz": Compression.XZ,
    ".zst": Compression.ZSTD,
}
_ARCHIVE_SUFFIXES: Final[tuple[tuple[str, ArchiveFormat, Compression | None], ...]] = (
    (".tar.gz", ArchiveFormat.TAR, Compression.GZIP),
    (".tgz", ArchiveFormat.TAR, Compression.GZIP),
    (".tar.bz2", ArchiveFormat.TAR, Compression.BZIP2),
    (".tbz2", ArchiveFormat.TAR, Compression.BZIP2),
    (".tbz", ArchiveFormat.TAR, Compression.BZIP2),
    (".tar.xz", ArchiveFormat.TAR, Compression.XZ),
    (".txz", ArchiveFormat.TAR, Compression.XZ),
    (".tar.zst", ArchiveFormat.TAR, Compression.ZSTD),
    (".tzst", ArchiveFormat.TAR, Compression.ZSTD),
    (".tar", ArchiveFormat.TAR, None),
    (".zip", ArchiveFormat.ZIP, None),
)


def archive_format(name: str) -> tuple[ArchiveFormat, Compression | None] | None:
    """The container format of a file, by its name; ``None`` for anything else."""
    lower = name.lower()
    for suffix, container, compression in _ARCHIVE_SUFFIXES:
        if lower.endswith(suffix) and len(lower) > len(suffix):
            return container, compression
    return None


def compression_of(name: str) -> Compression | None:
    """The single-file compression of a file, by its name (``None`` for an archive)."""
    if archive_format(name) is not None:
        return None
    lower = name.lower()
    for suffix, compression in _COMPRESSION_SUFFIXES.items():
        if lower.endswith(suffix) and len(lower) > len(suffix):
            return compression
    return None


def decompressed_name(name: str) -> str:
    """The name of what a compressed file holds: ``changelog.gz`` → ``changelog``."""
    base = PurePosixPath(name).name
    return base[: base.rfind(".")] if compression_of(base) else base


def member_key(archive_key: str, chain: tuple[str, ...]) -> str:
    """The document key of a member: ``a.zip!/dir/b.zip!/c.md`` for ``("dir/b.zip", "c.md")``."""
    return MEMBER_SEPARATOR.join((archive_key, *chain))


def split_member_key(key: str) -> tuple[str, tuple[str, ...]]:
    """The key of the outermost archive and the chain of member names down to ``key``.

    ``a.zip!/dir/b.zip!/c.md`` gives ``("a.zip", ("dir/b.zip", "c.md"))``; a key that is
    no member gives ``(key, ())``. A ``!/`` counts only after an archive's name, so a
    folder called ``news!`` is no archive.
    """
    pieces = key.split(MEMBER_SEPARATOR)
    parts: list[str] = []
    current = pieces[0]
    for piece in pieces[1:]:
        if archive_format(PurePosixPath(current).name) is not None:
            parts.append(current)
            current = piece
        else:
            current = f"{current}{MEMBER_SEPARATOR}{piece}"
    parts.append(current)
    return parts[0], tuple(parts[1:])


@dataclass(frozen=True)
class ArchiveLimits:
    """What reading one archive or compressed file may cost before it is refused.

    The defaults stop a zip bomb or a gzip bomb after a few MB of output and leave
    ordinary archives of documents alone.

    Attributes:
        max_total_mb: Decompressed bytes one archive may give, nested archives included
            (``TRIBRID_ARCHIVES__MAX_TOTAL_MB``).
        max_member_mb: Decompressed bytes one member or compressed file may give
            (``TRIBRID_ARCHIVES__MAX_MEMBER_MB``).
        max_ratio: Largest decompressed-to-compressed size ratio of a member or stream
            over 1 MiB (``TRIBRID_ARCHIVES__MAX_RATIO``).
        max_members: Members one archive may hold, nested archives included
            (``TRIBRID_ARCHIVES__MAX_MEMBERS``).
        max_depth: Archive levels opened: 1 reads the members of an archive, 2 also the
            members of archives inside it; 0 opens no archive at all
            (``TRIBRID_ARCHIVES__MAX_DEPTH``).
    """

    max_total_mb: float = 1024.0
    max_member_mb: float = 200.0
    max_ratio: float = 100.0
    max_members: int = 10_000
    max_depth: int = 2

    def __post_init__(self) -> None:
        if self.max_total_mb <= 0 or self.max_member_mb <= 0 or self.max_ratio < 1:
            raise ConfigError(
                f"archive limits must be positive (max_ratio >= 1), got {self}; "
                "fix TRIBRID_ARCHIVES__*"
            )
        if self.max_members < 1 or self.max_depth < 0:
            raise ConfigError(
                f"archive max_members must be >= 1 and max_depth >= 0, got {self}; "
                "fix TRIBRID_ARCHIVES__MAX_MEMBERS / TRIBRID_ARCHIVES__MAX_DEPTH"
            )

    @property
    def max_total_bytes(self) -> int:
        """``max_total_mb`` in bytes."""
        return int(self.max_total_mb * _MIB)

    @property
    def max_member_bytes(self) -> int:
        """``max_member_mb`` in bytes."""
        return int(self.max_member_mb * _MIB)

    def opens(self, name: str) -> bool:
        """Whether a file of this name is read as an archive (its members are documents)."""
        return self.max_depth > 0 and archive_format(name) is not None


class ArchiveLimitError(ParseError):
    """A limit only a hostile archive reaches (ratio, total bytes, members): it fails whole."""


class MemberMissingError(ParseError):
    """The archive no longer holds the member asked for (it changed since it was listed)."""

    def __init__(self, message: str) -> None:
        super().__init__(UNREADABLE, message)


@dataclass(frozen=True)
class ArchiveMember(SourceDocument):
    """A document inside an archive: its bytes are read from ``path`` through ``member``.

    ``key`` is :func:`member_key` of the archive's key and ``member``; ``size`` is the
    member's decompressed size and ``mtime_ns`` the archive's, so an archive that did not
    change costs nothing and a changed one re-reads only members whose bytes changed.

    Attributes:
        member: Member names from the outermost archive down (``("dir/b.zip", "c.md")``).
        digest: SHA-256 of the member's bytes, computed when the archive was scanned;
            ``None`` for a member refused before it was read.
    """

    member: tuple[str, ...] = ()
    digest: str | None = field(default=None, compare=False, repr=False)

    @property
    def content_hash(self) -> str:  # the member's bytes, not the archive's
        """SHA-256 of the member's bytes.

        Raises:
            OSError: The member was refused before it was read.
        """
        if self.digest is None:
            raise OSError(f"{self.key}: member was not read")
        return self.digest

    @property
    def archive_key(self) -> str:
        """Key of the outermost archive."""
        return split_member_key(self.key)[0]


@dataclass(frozen=True)
class MemberEntry:
    """One member found by :func:`scan_archive`.

    Attributes:
        key: The member's document key (``a.zip!/dir/m.pdf``; a refused name is
            percent-encoded into one segment, so no key ever holds ``..``).
        chain: Member names from the outermost archive down; empty for a refused name.
        size: Decompressed bytes read (0 when refused before reading).
        digest: SHA-256 of the bytes, or ``None`` when the member failed.
        failure: ``(kind, message)`` when the member cannot be indexed.
    """

    key: str
    chain: tuple[str, ...]
    size: int = 0
    digest: str | None = None
    failure: tuple[str, str] | None = None


# -- the budget of one archive ----------------------------------------------------------


class _Budget:
    """Counts members and decompressed bytes of one outermost archive against the limits."""

    def __init__(self, limits: ArchiveLimits, label: str) -> None:
        self.limits = limits
        self.label = label
        self.members = 0
        self.total = 0

    def count_member(self) -> None:
        self.members += 1
        if self.members > self.limits.max_members:
            raise ArchiveLimitError(
                TOO_MANY_MEMBERS,
                f"{self.label}: holds more than {self.limits.max_members} members (the "
                "max_members limit); raise TRIBRID_ARCHIVES__MAX_MEMBERS or split the archive",
            )

    def charge(self, count: int) -> None:
        self.total += count
        if self.total > self.limits.max_total_bytes:
            raise self.total_error()

    def total_error(self) -> ArchiveLimitError:
        return ArchiveLimitError(
            TOO_LARGE,
            f"{self.label}: unpacks to more than {self.limits.max_total_mb:g} MB (the "
            "max_total_mb limit; a compression bomb?); raise "
            "TRIBRID_ARCHIVES__MAX_TOTAL_MB or remove it from the folder",
        )

    def ratio_error(self, where: str, out: int, compressed: int) -> ArchiveLimitError:
        return ArchiveLimitError(
            TOO_LARGE,
            f"{where}: expands {out / max(compressed, 1):.0f} times its compressed size, over "
            f"the max_ratio limit of {self.limits.max_ratio:g} (a compression bomb?); raise "
            "TRIBRID_ARCHIVES__MAX_RATIO or remove it from the folder",
        )


class _Counting:
    """A readable stream that counts the (compressed) bytes read through it."""

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self.count = 0

    def read(self, size: int = -1, /) -> bytes:
        data = self._raw.read(size)
        self.count += len(data)
        return data


class _Inflating(io.RawIOBase):
    """A decompressed stream that stops at the ratio limit, the byte limit and the budget."""

    def __init__(
        self,
        raw: IO[bytes],
        compression: Compression,
        *,
        where: str,
        limit: int,
        limit_error: Callable[[], ParseError],
        budget: _Budget,
    ) -> None:
        self._counting = _Counting(raw)
        self._stream = _decompressor(self._counting, compression, where)
        self._where = where
        self._limit = limit
        self._limit_error = limit_error
        self._budget = budget
        self.out = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            data = self._stream.read(min(len(buffer), _BLOCK))
        except (OSError, EOFError, zlib.error, lzma.LZMAError, ValueError) as error:
            raise ParseError(
                CORRUPT,
                f"{self._where}: compressed data is damaged ({type(error).__name__}: {error}); "
                "re-create it or remove it from the folder",
            ) from error
        buffer[: len(data)] = data
        self.out += len(data)
        ratio_limit = self._budget.limits.max_ratio * max(self._counting.count, 1)
        if self.out > _RATIO_FLOOR and self.out > ratio_limit:
            raise self._budget.ratio_error(self._where, self.out, self._counting.count)
        if self.out > self._limit:
            raise self._limit_error()
        self._budget.charge(len(data))
        return len(data)


def _decompressor(raw: Any, compression: Compression, where: str) -> IO[bytes]:
    """A stream of ``raw`` decompressed; its ``read(n)`` never returns more than ``n`` bytes."""
    if compression == Compression.GZIP:
        return cast(IO[bytes], gzip.GzipFile(fileobj=raw, mode="rb"))
    if compression == Compression.BZIP2:
        return cast(IO[bytes], bz2.BZ2File(raw))
    if compression == Compression.XZ:
        return cast(IO[bytes], lzma.LZMAFile(raw))
    try:
        import zstandard
    except ImportError as error:
        raise ParseError(
            UNSUPPORTED_TYPE,
            f"{where}: reading .zst needs the Python package zstandard, which is not "
            "installed (install the parse extra: `pip install 'tribrid[parse]'`)",
        ) from error
    reader: IO[bytes] = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
    return reader


def _member_too_large(where: str, limits: ArchiveLimits) -> ParseError:
    return ParseError(
        TOO_LARGE,
        f"{where}: unpacks to more than {limits.max_member_mb:g} MB (the max_member_mb "
        "limit); raise TRIBRID_ARCHIVES__MAX_MEMBER_MB or remove it from the folder",
    )


# -- member names -------------------------------------------------------------------------


def _member_name(raw: str) -> tuple[str | None, str | None]:
    """``(safe name, None)``, ``(None, why refused)``, or ``(None, None)`` to skip silently.

    A safe name is relative, has no ``..`` and no backslash, and is normalised (no ``.``
    or empty segments). Hidden entries and macOS resource forks are skipped, as hidden
    files are in a folder.
    """
    if not raw or "\x00" in raw:
        return None, "has an empty name or a NUL byte"
    if raw.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", raw):
        return None, "is an absolute path"
    parts = re.split(r"[/\\]", raw)
    if ".." in parts:
        return None, "leaves the archive (a `..` in its path)"
    if "\\" in raw:
        return None, "has a backslash in its path"
    kept = [part for part in parts if part not in ("", ".")]
    if not kept:
        return None, None
    if any(part.startswith(".") or part == "__MACOSX" for part in kept):
        return None, None
    return "/".join(kept), None


def _refused_key(label: str, raw: str) -> str:
    return f"{label}{MEMBER_SEPARATOR}{quote(raw, safe='') or '%00'}"


def _safe_suffix(name: str) -> str:
    suffix = PurePosixPath(name).suffix.lower()
    return suffix if _SAFE_SUFFIX.fullmatch(suffix) else ""


# -- iterating one archive's members -------------------------------------------------------


@dataclass
class _Entry:
    """A member as the archive's directory describes it, before any byte is read."""

    name: str
    size: int
    compressed_size: int | None  # zip only: the declared ratio is checked up front
    problem: tuple[str, str] | None  # (kind, why): links, devices, encrypted members
    open: Callable[[], IO[bytes]] | None  # valid only while this entry is current
    charged: bool  # its bytes are already counted by the decompressing stream around it


def _members(
    handle: IO[bytes],
    container: ArchiveFormat,
    compression: Compression | None,
    label: str,
    budget: _Budget,
) -> Iterator[_Entry]:
    if container == ArchiveFormat.ZIP:
        yield from _zip_members(handle, label, budget)
    else:
        yield from _tar_members(handle, compression, label, budget)


def _zip_entry_count(handle: IO[bytes], label: str) -> int:
    """Members declared by a zip's end-of-central-directory record, before parsing the rest."""
    handle.seek(0, io.SEEK_END)
    size = handle.tell()
    tail_size = min(size, 22 + 0xFFFF)
    handle.seek(size - tail_size)
    tail = handle.read(tail_size)
    end = tail.rfind(b"PK\x05\x06")
    if end < 0 or end + 22 > len(tail):
        raise ParseError(
            CORRUPT,
            f"{label}: not a zip archive or truncated (no end of central directory); "
            "re-create it or remove it from the folder",
        )
    (entries,) = struct.unpack_from("<H", tail, end + 10)
    if entries == 0xFFFF and end >= 20 and tail[end - 20 : end - 16] == b"PK\x06\x07":
        (record_at,) = struct.unpack_from("<Q", tail, end - 12)
        handle.seek(record_at)
        record = handle.read(56)
        if len(record) == 56 and record[:4] == b"PK\x06\x06":
            (entries,) = struct.unpack_from("<Q", record, 32)
    handle.seek(0)
    return int(entries)


def _zip_members(handle: IO[bytes], label: str, budget: _Budget) -> Iterator[_Entry]:
    declared = _zip_entry_count(handle, label)
    if budget.members + declared > budget.limits.max_members:
        budget.members += declared
        budget.count_member()  # raises, naming the limit
    try:
        archive = zipfile.ZipFile(handle)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError) as error:
        raise ParseError(
            CORRUPT,
            f"{label}: zip archive is damaged ({error}); re-create it or remove it from the folder",
        ) from error
    with archive:
        for info in archive.infolist():
            if info.is_dir():
                continue
            # Unix file type bits, when the archiver recorded them (0 when it did not).
            kind = stat.S_IFMT(info.external_attr >> 16) if info.create_system == 3 else 0
            problem: tuple[str, str] | None = None
            if kind == stat.S_IFLNK:
                problem = (
                    UNSAFE_MEMBER,
                    "is a symbolic link; links in archives are never followed",
                )
            elif kind not in (0, stat.S_IFREG):
                problem = (UNSAFE_MEMBER, "is a device, FIFO or socket, not a file")
            elif info.flag_bits & 0x1:
                problem = (
                    ENCRYPTED,
                    "is encrypted; add an unencrypted copy to the folder or remove it",
                )

            def opener(info: zipfile.ZipInfo = info) -> IO[bytes]:
                return archive.open(info)

            yield _Entry(
                info.filename, info.file_size, info.compress_size, problem, opener, charged=False
            )


def _tar_members(
    handle: IO[bytes], compression: Compression | None, label: str, budget: _Budget
) -> Iterator[_Entry]:
    stream: IO[bytes] = handle
    if compression is not None:
        stream = io.BufferedReader(
            _Inflating(
                handle,
                compression,
                where=label,
                limit=budget.limits.max_total_bytes,
                limit_error=budget.total_error,
                budget=budget,
            ),
            buffer_size=_BLOCK,
        )
    try:
        archive = tarfile.open(fileobj=stream, mode="r|")  # noqa: SIM115 - `with` below
    except tarfile.TarError as error:
        raise ParseError(
            CORRUPT,
            f"{label}: tar archive is damaged ({error}); re-create it or remove it from the folder",
        ) from error
    with archive:
        while True:
            try:
                member = archive.next()
            except (tarfile.TarError, EOFError) as error:
                raise ParseError(
                    CORRUPT,
                    f"{label}: tar archive is damaged ({error}); re-create it or remove it "
                    "from the folder",
                ) from error
            if member is None:
                return
            if member.isdir():
                continue
            problem: tuple[str, str] | None = None
            if member.issym() or member.islnk():
                problem = (
                    UNSAFE_MEMBER,
                    f"is a link (to {member.linkname!r}); links in archives are never followed",
                )
            elif not member.isreg():
                problem = (UNSAFE_MEMBER, "is a device, FIFO or special entry, not a file")

            def opener(member: tarfile.TarInfo = member) -> IO[bytes]:
                extracted = archive.extractfile(member)
                if extracted is None:  # pragma: no cover - regular members always open
                    raise ParseError(CORRUPT, f"{label}: member {member.name!r} cannot be read")
                return extracted

            yield _Entry(
                member.name, member.size, None, problem, opener, charged=compression is not None
            )


def _checked_entry(entry: _Entry, where: str, budget: _Budget) -> None:
    """Refuse a member before reading it: declared size and declared ratio."""
    limits = budget.limits
    compressed = entry.compressed_size
    if (
        compressed is not None
        and entry.size > _RATIO_FLOOR
        and entry.size > limits.max_ratio * max(compressed, 1)
    ):
        raise budget.ratio_error(where, entry.size, compressed)
    if entry.size > limits.max_member_bytes:
        raise _member_too_large(where, limits)


def _drain(entry: _Entry, write: Callable[[bytes], object], where: str, budget: _Budget) -> int:
    """Stream a member's bytes into ``write``, within the limits; return how many."""
    assert entry.open is not None
    limits = budget.limits
    count = 0
    try:
        with entry.open() as stream:
            while block := stream.read(_BLOCK):
                count += len(block)
                if count > limits.max_member_bytes:
                    raise _member_too_large(where, limits)
                if entry.compressed_size is not None and count > max(
                    _RATIO_FLOOR, limits.max_ratio * max(entry.compressed_size, 1)
                ):
                    raise budget.ratio_error(where, count, entry.compressed_size)
                if not entry.charged:
                    budget.charge(len(block))
                write(block)
    except ParseError:
        raise
    except NotImplementedError as error:
        raise ParseError(
            UNSUPPORTED_TYPE,
            f"{where}: uses a compression method this reader lacks ({error}); "
            "re-create the archive with deflate",
        ) from error
    except (zipfile.BadZipFile, tarfile.TarError, zlib.error, lzma.LZMAError, EOFError) as error:
        raise ParseError(
            CORRUPT,
            f"{where}: member is damaged ({type(error).__name__}: {error}); re-create the "
            "archive or remove it from the folder",
        ) from error
    except (OSError, RuntimeError, ValueError) as error:
        raise ParseError(
            CORRUPT,
            f"{where}: member cannot be read ({type(error).__name__}: {error}); re-create the "
            "archive or remove it from the folder",
        ) from error
    return count


def _too_deep(where: str, limits: ArchiveLimits) -> ParseError:
    return ParseError(
        TOO_DEEP,
        f"{where}: an archive nested more than {limits.max_depth} deep (the max_depth "
        "limit); raise TRIBRID_ARCHIVES__MAX_DEPTH or unpack it first",
    )


# -- scanning (listing) ---------------------------------------------------------------------


def scan_archive(path: Path, *, key: str, limits: ArchiveLimits) -> list[MemberEntry]:
    """Every member of an archive, nested archives opened, each with its hash or failure.

    Each member is read once, in blocks, into a SHA-256: nothing is written to disk
    except nested archives over 1 MiB, spooled into a private temporary file while they
    are read.

    Args:
        path: The archive on disk.
        key: Its document key (members are keyed below it).
        limits: What reading it may cost.

    Returns:
        Members in archive order: indexable ones (``failure`` is ``None``) and those
        refused or failed one by one (a link, a ``..`` name, too large, too deep …).

    Raises:
        ParseError: The archive as a whole cannot be read (damaged); an
            :class:`ArchiveLimitError` when it goes over the ratio, total-bytes or
            member-count limit.
        OSError: The file cannot be opened.
    """
    container = archive_format(path.name)
    if container is None:
        raise ConfigError(f"{key}: is not an archive by its name; scan only archive files")
    budget = _Budget(limits, key)
    entries: list[MemberEntry] = []
    with path.open("rb") as handle:
        _scan(handle, container, key, (), 1, budget, entries)
    return entries


def _scan(
    handle: IO[bytes],
    container: tuple[ArchiveFormat, Compression | None],
    label: str,
    chain: tuple[str, ...],
    depth: int,
    budget: _Budget,
    out: list[MemberEntry],
) -> None:
    for entry in _members(handle, *container, label, budget):
        budget.count_member()
        name, refusal = _member_name(entry.name)
        if name is None:
            if refusal is not None:
                where = f"{label}{MEMBER_SEPARATOR}{entry.name}"
                out.append(
                    MemberEntry(
                        _refused_key(label, entry.name),
                        (),
                        failure=(
                            UNSAFE_MEMBER,
                            f"{where}: refused: member name {entry.name!r} {refusal}; "
                            "it is never written or read",
                        ),
                    )
                )
            continue
        key = f"{label}{MEMBER_SEPARATOR}{name}"
        here = (*chain, name)
        if entry.problem is not None:
            kind, why = entry.problem
            out.append(MemberEntry(key, here, entry.size, failure=(kind, f"{key}: {why}")))
            continue
        try:
            _checked_entry(entry, key, budget)
            nested = archive_format(name)
            if nested is None:
                digest = hashlib.sha256()
                size = _drain(entry, digest.update, key, budget)
                out.append(MemberEntry(key, here, size, digest.hexdigest()))
                continue
            if depth + 1 > budget.limits.max_depth:
                raise _too_deep(key, budget.limits)
            with tempfile.SpooledTemporaryFile(_SPOOL_IN_MEMORY) as spool:
                size = _drain(entry, spool.write, key, budget)
                spool.seek(0)
                inner: list[MemberEntry] = []
                _scan(spool, nested, key, here, depth + 1, budget, inner)
            out.extend(inner)
            if not any(e.failure is None for e in inner):
                out.append(MemberEntry(key, here, size, failure=no_member_failure(key, inner)))
        except ArchiveLimitError:
            raise
        except ParseError as error:
            out.append(MemberEntry(key, here, entry.size, failure=(error.kind, str(error))))


def no_member_failure(key: str, entries: list[MemberEntry]) -> tuple[str, str]:
    """The failure of an archive none of whose members can be indexed."""
    if not entries:
        return UNSUPPORTED_TYPE, f"{key}: archive holds no documents; nothing to index"
    reasons = "; ".join(e.failure[1] for e in entries[:3] if e.failure is not None)
    more = f" (and {len(entries) - 3} more)" if len(entries) > 3 else ""
    kinds = {e.failure[0] for e in entries if e.failure is not None}
    kind = kinds.pop() if len(kinds) == 1 else UNSUPPORTED_TYPE
    return kind, f"{key}: no member of this archive can be indexed: {reasons}{more}"


# -- reading one member or one compressed file (parsing) -----------------------------------


def extract_member(
    path: Path, chain: tuple[str, ...], *, key: str, limits: ArchiveLimits, folder: Path
) -> Path:
    """Write one member's bytes into ``folder`` (a private folder the caller owns).

    Every check of :func:`scan_archive` runs again (the archive may have changed since
    it was listed): the member's name, type, size, ratio and depth. The file written is
    named ``member`` plus the member's extension, whatever the member's name.

    Args:
        path: The outermost archive on disk.
        chain: Member names from it down to the member.
        key: The member's document key (for messages).
        limits: What reading it may cost.
        folder: Where to write it.

    Returns:
        The file written.

    Raises:
        ParseError: The member is refused, over a limit, damaged or gone
            (:class:`MemberMissingError`).
    """
    container = archive_format(path.name)
    if container is None or not chain:
        raise ConfigError(f"{key}: is not an archive member; pass a member of an archive")
    if len(chain) > limits.max_depth:
        raise _too_deep(key, limits)
    archive_key, _ = split_member_key(key)
    budget = _Budget(limits, archive_key)
    with path.open("rb") as handle:
        return _extract(handle, container, archive_key, chain, budget, folder)


def _extract(
    handle: IO[bytes],
    container: tuple[ArchiveFormat, Compression | None],
    label: str,
    chain: tuple[str, ...],
    budget: _Budget,
    folder: Path,
) -> Path:
    wanted = chain[0]
    for entry in _members(handle, *container, label, budget):
        budget.count_member()
        name, _ = _member_name(entry.name)
        if name != wanted:
            continue
        key = f"{label}{MEMBER_SEPARATOR}{name}"
        if entry.problem is not None:
            raise ParseError(entry.problem[0], f"{key}: {entry.problem[1]}")
        _checked_entry(entry, key, budget)
        if len(chain) == 1:
            target = folder / f"member{_safe_suffix(name)}"
            with target.open("xb") as sink:
                _drain(entry, sink.write, key, budget)
            return target
        nested = archive_format(name)
        if nested is None:
            break
        with tempfile.SpooledTemporaryFile(_SPOOL_IN_MEMORY) as spool:
            _drain(entry, spool.write, key, budget)
            spool.seek(0)
            return _extract(spool, nested, key, chain[1:], budget, folder)
    raise MemberMissingError(
        f"{member_key(label, chain)}: the archive no longer holds this member; sync again"
    )


def member_digest(
    path: Path, chain: tuple[str, ...], *, key: str, limits: ArchiveLimits
) -> tuple[int, str]:
    """Size and SHA-256 of one member's bytes, read within the limits (nothing written).

    Raises:
        ParseError: As :func:`extract_member`.
    """
    with tempfile.TemporaryDirectory(prefix="tribrid-member-") as folder:
        extracted = extract_member(path, chain, key=key, limits=limits, folder=Path(folder))
        digest = hashlib.sha256()
        with extracted.open("rb") as handle:
            while block := handle.read(_BLOCK):
                digest.update(block)
        return extracted.stat().st_size, digest.hexdigest()


def decompress_file(
    path: Path, compression: Compression, *, key: str, limits: ArchiveLimits, folder: Path
) -> Path:
    """Decompress a compressed file into ``folder``, within the member and ratio limits.

    The file written is named ``inner`` plus the extension of the name without the
    compression suffix (``notes.md.gz`` → ``inner.md``; ``changelog.gz`` → ``inner``,
    typed by its content).

    Raises:
        ParseError: ``too_large`` over ``max_member_mb`` or ``max_ratio``, ``corrupt``
            when the data is damaged.
    """
    # One file: its own limit is the member limit, whatever the per-archive total.
    budget = _Budget(
        replace(limits, max_total_mb=max(limits.max_total_mb, limits.max_member_mb)), key
    )
    target = folder / f"inner{_safe_suffix(decompressed_name(path.name))}"
    with path.open("rb") as raw, target.open("xb") as sink:
        stream = _Inflating(
            raw,
            compression,
            where=key,
            limit=limits.max_member_bytes,
            limit_error=lambda: _member_too_large(key, limits),
            budget=budget,
        )
        buffer = bytearray(_BLOCK)
        while count := stream.readinto(buffer):
            sink.write(memoryview(buffer)[:count])
    if target.stat().st_size == 0:
        raise ParseError("empty", f"{key}: decompresses to nothing (0 bytes)")
    return target


__all__ = [
    "MEMBER_SEPARATOR",
    "ArchiveFormat",
    "ArchiveLimitError",
    "ArchiveLimits",
    "ArchiveMember",
    "Compression",
    "MemberEntry",
    "MemberMissingError",
    "archive_format",
    "compression_of",
    "decompress_file",
    "decompressed_name",
    "extract_member",
    "member_digest",
    "member_key",
    "no_member_failure",
    "scan_archive",
    "split_member_key",
]
