"""A local folder as a source: streamed with ``os.scandir``, never leaving its root."""

from __future__ import annotations

import fnmatch
import os
import stat
from collections.abc import Iterator, Sequence
from pathlib import Path

from tribrid.connectors.base import ConnectorOptions, ListedItem, ListingFailure, SourceDocument
from tribrid.errors import ConnectorError

# Folders no one wants indexed: version control, caches, virtual environments.
DEFAULT_EXCLUDED_DIRS = frozenset(
    {".git", ".hg", ".svn", ".bzr", "CVS", "__pycache__", "node_modules", ".venv", ".tox"}
)


class LocalFolderConnector:
    """Lists the files below a folder as documents.

    The walk is depth-first with ``os.scandir`` and yields as it goes, so a folder of
    a million files is never held in memory. Hidden entries (names starting with ``.``)
    and version-control folders are skipped unless ``include_hidden`` is set. A symlink
    is followed only with ``follow_symlinks=True`` and only when its target stays inside
    the root; otherwise it is reported as a :class:`ListingFailure` and the walk goes on.

    Example:
        >>> connector = LocalFolderConnector("docs", include=["*.pdf", "*.md"])
        >>> for item in connector.list_documents():
        ...     print(item.key)

    Args:
        root: The folder to list.
        include: Glob patterns on the relative POSIX path (or the file name); when given,
            only matching files are listed.
        exclude: Glob patterns of files or folders to skip.
        follow_symlinks: Follow symlinks whose target lies inside the root.
        include_hidden: Also list hidden files and folders.
        source_key: Stable key of the source; by default ``local:<resolved root>``.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        include: Sequence[str] = (),
        exclude: Sequence[str] = (),
        follow_symlinks: bool = False,
        include_hidden: bool = False,
        source_key: str | None = None,
    ) -> None:
        path = Path(root).expanduser()
        try:
            self._root = path.resolve(strict=True)
        except (OSError, RuntimeError) as e:
            raise ConnectorError(
                f"folder {str(path)!r} does not exist or cannot be resolved: {e}"
            ) from e
        if not self._root.is_dir():
            raise ConnectorError(
                f"{str(path)!r} is not a folder; pass the folder that holds the documents"
            )
        self._include = tuple(include)
        self._exclude = tuple(exclude)
        self._follow_symlinks = follow_symlinks
        self._include_hidden = include_hidden
        self._source_key = source_key or f"local:{self._root.as_posix()}"

    @classmethod
    def from_location(cls, location: str, options: ConnectorOptions) -> LocalFolderConnector:
        """The connector of the folder ``location``, with the include/exclude options."""
        return cls(
            location,
            include=options.include,
            exclude=options.exclude,
            follow_symlinks=options.follow_symlinks,
            source_key=options.source_key,
        )

    @property
    def root(self) -> Path:
        """The resolved root folder."""
        return self._root

    @property
    def source_key(self) -> str:
        """Stable key of this source."""
        return self._source_key

    @property
    def location(self) -> str:
        """Where the source is now: ``local:<resolved root>`` (its key may differ)."""
        return f"local:{self._root.as_posix()}"

    def list_documents(self) -> Iterator[ListedItem]:
        """Yield a :class:`SourceDocument` per file and a :class:`ListingFailure` per refusal."""
        root_info = self._root.stat()
        self._seen_dirs: set[tuple[int, int]] = {(root_info.st_dev, root_info.st_ino)}
        stack: list[tuple[Path, str]] = [(self._root, "")]
        while stack:
            folder, prefix = stack.pop()
            try:
                with os.scandir(folder) as entries:
                    # Sorted per folder so listings are reproducible; one folder at a time.
                    batch = sorted(entries, key=lambda e: e.name)
            except OSError as e:
                yield self._failure(
                    prefix.rstrip("/") or ".",
                    "unreadable",
                    f"cannot list folder: {e.strerror or e}",
                )
                continue
            subfolders: list[tuple[Path, str]] = []
            for entry in batch:
                rel = f"{prefix}{entry.name}"
                if self._skipped(entry.name, rel):
                    continue
                item = self._undecodable(entry.name, rel) or self._visit(entry, rel)
                if isinstance(item, tuple):
                    subfolders.append(item)
                elif item is not None:
                    yield item
            stack.extend(reversed(subfolders))

    def accepts(self, rel: str, *, is_dir: bool = False) -> bool:
        """Whether a path below the root is one this connector lists (or walks into).

        The same rules as :meth:`list_documents`, applied to a path instead of a walk:
        every folder on the way must be walked (not hidden, not a version-control or
        cache folder, not excluded), and a file must match ``include`` if given. Used by
        ``tribrid watch`` to ignore file events that no sync would see.

        Args:
            rel: POSIX path relative to the root, e.g. ``"notes/2024/a.md"``.
            is_dir: The path is a folder (``include`` patterns apply to files only).
        """
        parts = [p for p in rel.split("/") if p and p != "."]
        if not parts or ".." in parts:
            return False
        for depth, name in enumerate(parts, 1):
            if self._skipped(name, "/".join(parts[:depth])):
                return False
        return is_dir or self._included("/".join(parts), parts[-1])

    def _included(self, rel: str, name: str) -> bool:
        if not self._include:
            return True
        return any(fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(name, p) for p in self._include)

    def _skipped(self, name: str, rel: str) -> bool:
        if not self._include_hidden and (name.startswith(".") or name in DEFAULT_EXCLUDED_DIRS):
            return True
        return any(fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(name, p) for p in self._exclude)

    def _undecodable(self, name: str, rel: str) -> ListingFailure | None:
        """The refusal of a name that is not valid UTF-8, or ``None`` for a good name.

        Such a name (a Latin-1 file name copied from an old share, say) decodes to lone
        surrogates, which no ledger, payload or terminal can hold; the key shows its bad
        bytes as ``\\xNN`` escapes. A folder with such a name is refused whole, which also
        keeps what the ledger has below it.
        """
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            shown = rel.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
            return self._failure(
                shown,
                "bad_name",
                "the name is not valid UTF-8; rename it (for example with "
                "`convmv -f latin1 -t utf8`) to index it",
            )
        return None

    def _visit(self, entry: os.DirEntry[str], rel: str) -> ListedItem | tuple[Path, str] | None:
        path = Path(entry.path)
        try:
            if entry.is_symlink():
                try:
                    target = path.resolve(strict=True)
                except (OSError, RuntimeError) as e:
                    return self._failure(rel, "unreadable", f"broken or looping symlink: {e}")
                if not target.is_relative_to(self._root):
                    return self._failure(
                        rel,
                        "outside_root",
                        f"symlink points outside the folder (to {target}); refused. "
                        "Copy the file into the folder, or index its folder as a source of its own",
                    )
                if not self._follow_symlinks:
                    return None  # its target inside the root is listed under its own path
                info = target.stat()
            else:
                info = entry.stat(follow_symlinks=False)
        except OSError as e:
            return self._failure(rel, "unreadable", f"cannot stat: {e.strerror or e}")
        if stat.S_ISDIR(info.st_mode):
            if (info.st_dev, info.st_ino) in self._seen_dirs:
                return None  # a followed symlink back to a folder already walked
            self._seen_dirs.add((info.st_dev, info.st_ino))
            return (path, f"{rel}/")
        if not self._included(rel, entry.name):
            return None
        if not stat.S_ISREG(info.st_mode):
            # Never opened: reading a FIFO blocks, a device never ends.
            return self._failure(
                rel,
                "not_a_file",
                f"is a {_special_kind(info.st_mode)}, not a regular file; it is never read. "
                "Move it out of the folder or exclude it (--exclude)",
            )
        if not os.access(path, os.R_OK):
            return self._failure(
                rel, "unreadable", "permission denied; make the file readable by this user"
            )
        return SourceDocument(
            source_key=self._source_key,
            key=rel,
            path=path,
            size=info.st_size,
            mtime_ns=info.st_mtime_ns,
        )

    def _failure(self, rel: str, kind: str, message: str) -> ListingFailure:
        return ListingFailure(
            source_key=self._source_key, key=rel, kind=kind, message=f"{rel}: {message}"
        )


def _special_kind(mode: int) -> str:
    """What a non-regular, non-folder file is, in words."""
    if stat.S_ISFIFO(mode):
        return "named pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode):
        return "character device"
    if stat.S_ISBLK(mode):
        return "block device"
    return "special file"
