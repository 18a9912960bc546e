"""Commands import only what they use: the heavy libraries stay out of quick commands.

Each test runs ``tribrid`` in a fresh Python process (the console script's own entry,
:func:`tribrid.cli.main`) and reads which modules that process imported. A top-level
import of a heavy library anywhere on a command's path (the package ``__init__``s, the
CLI, the façade, the composition root, the ledger, the remote clients) fails here.
What the start-up costs is measured in ``benchmarks/startup.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from tests.fakes import fake_encoders
from tests.support.retrievers import corpus_points
from tests.support.server import running_server
from tribrid import factory
from tribrid.settings import Settings

ROOT = Path(__file__).resolve().parents[1]

# Run the CLI as the console script does, then report the top-level names of every
# module the process imported, on the last line of stderr (after whatever the CLI wrote).
_RUNNER = """
import json, sys
from tribrid.cli import main
sys.argv = ["tribrid", *json.loads(sys.argv[1])]
code = 0
try:
    main()
except SystemExit as e:
    code = e.code or 0
sys.stderr.write("\\n" + json.dumps({"code": code, "modules": sorted(sys.modules)}) + "\\n")
"""

#: Model runtimes and parsers: never in a command that loads no model or parses nothing.
MODELS_AND_PARSING = frozenset(
    {
        "torch",
        "transformers",
        "sentence_transformers",
        "onnxruntime",
        "onnx",
        "tokenizers",
        "unstructured",
        "unstructured_inference",
        "pandas",
        "scipy",
    }
)
#: Services and stores: the Celery runtime, the HTTP server, the store clients, the ledger.
SERVICES = frozenset(
    {
        "celery",
        "kombu",
        "fastapi",
        "starlette",
        "uvicorn",
        "prometheus_client",
        "watchdog",
        "qdrant_client",
        "qdrant_edge",
        "sqlalchemy",
        "alembic",
        "psycopg",
        "pytrec_eval",
    }
)
#: What LangChain retrievers and vectors bring.
RETRIEVERS = frozenset({"langchain_core", "langsmith", "numpy", "httpx"})


def run_cli(args: Sequence[str], **env: str) -> tuple[str, set[str]]:
    """What a ``tribrid ARGS`` process printed, and the top-level packages it imported.

    The command must succeed. ``env`` is added to the environment.
    """
    done = subprocess.run(
        [sys.executable, "-c", _RUNNER, json.dumps(list(args))],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **env},
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stderr.strip().splitlines()[-1])
    assert report["code"] == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout, {name.split(".")[0] for name in report["modules"]}


def imported_by(args: Sequence[str]) -> set[str]:
    """The top-level packages a successful ``tribrid ARGS`` process imported."""
    return run_cli(args)[1]


def test_help_imports_nothing_heavy() -> None:
    loaded = imported_by(["--help"])
    assert "typer" in loaded  # the probe sees imports at all
    assert loaded & (MODELS_AND_PARSING | SERVICES | RETRIEVERS) == set()
    assert "pydantic_settings" not in loaded  # help reads no setting


def test_help_works_whatever_the_settings() -> None:
    """Help reads no setting, so a broken one does not hide it."""
    out, loaded = run_cli(["search", "--help"], TRIBRID_MODELS__BATCH_SIZE="many")
    assert "--mode" in out
    assert "pydantic_settings" not in loaded


@pytest.mark.slow
def test_every_command_help_imports_nothing_heavy() -> None:
    for command in ("ingest", "search", "status", "worker", "watch", "serve", "eval", "tune"):
        loaded = imported_by([command, "--help"])
        assert loaded & (MODELS_AND_PARSING | SERVICES | RETRIEVERS) == set(), command


def test_status_reads_an_up_to_date_ledger_without_sqlalchemy(tmp_path: Path) -> None:
    """The default SQLite ledger is read with the standard library (ledger/summary.py)."""
    data = tmp_path / "data"
    factory.build_ledger(Settings(data_dir=data)).close()  # an up-to-date ledger
    loaded = imported_by(["status", "--data-dir", str(data), "--json"])
    assert loaded & (MODELS_AND_PARSING | SERVICES | RETRIEVERS) == set()


@pytest.mark.slow
def test_status_of_a_new_data_dir_opens_the_sql_ledger(tmp_path: Path) -> None:
    """No ledger yet: the SQL ledger creates (migrates) it, and only it is imported."""
    loaded = imported_by(["status", "--data-dir", str(tmp_path / "new"), "--json"])
    assert {"sqlalchemy", "alembic"} <= loaded
    assert (
        loaded & (MODELS_AND_PARSING | (SERVICES - {"sqlalchemy", "alembic"}) | RETRIEVERS) == set()
    )


@pytest.mark.slow
def test_search_through_the_server_loads_no_model_store_or_ledger(tmp_path: Path) -> None:
    """The client of ``tribrid serve`` (tribrid.store.remote, retrievers/remote.py)."""
    with running_server(tmp_path / "data") as (_, settings):
        store = factory.build_store(settings, fake_encoders())
        store.upsert(corpus_points(fake_encoders()))
        store.close()
        out, loaded = run_cli(
            ["search", "binary quantization", "--data-dir", str(settings.data_dir), "--json"]
        )
    assert json.loads(out), "the search through the server found nothing"
    # httpx is its HTTP client; numpy is not needed to send a query and print hits.
    assert loaded & (MODELS_AND_PARSING | SERVICES | (RETRIEVERS - {"httpx"})) == set()


@pytest.mark.slow
def test_the_remote_retriever_loads_no_model_store_or_ledger(tmp_path: Path) -> None:
    """``tribrid.as_retriever()`` on a served data dir: LangChain, and nothing heavier."""
    with running_server(tmp_path / "data") as (_, settings):
        store = factory.build_store(settings, fake_encoders())
        store.upsert(corpus_points(fake_encoders()))
        store.close()
        code = (
            "import json, sys, tribrid\n"
            f"r = tribrid.as_retriever(data_dir={str(settings.data_dir)!r}, k=2)\n"
            "docs = r.invoke('binary quantization')\n"
            "print(json.dumps({'type': type(r).__name__, 'docs': len(docs),"
            " 'modules': sorted({m.split('.')[0] for m in sys.modules})}))\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300
        )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["type"] == "RemoteRetriever" and report["docs"] > 0
    assert set(report["modules"]) & (MODELS_AND_PARSING | SERVICES) == set()


@pytest.mark.slow
def test_a_lexical_search_in_process_loads_no_model(tmp_path: Path) -> None:
    """``-m bm25`` without a server opens the embedded store and encodes with BM25 only."""
    settings = Settings(data_dir=tmp_path / "data")
    real = factory.build_encoders(settings)  # building them loads no model
    schema = factory.collection_schema(settings, real)  # the shipped models' schema
    store = factory.build_store(settings, real, schema=schema)
    # The corpus with the fakes' vectors; dense ones padded to the shipped model's size
    # (never searched: only BM25 is).
    points = [
        replace(p, dense=[*p.dense, *[0.0] * (schema.dense_size - len(p.dense))])
        for p in corpus_points(fake_encoders())
    ]
    store.upsert(points)
    store.close()
    out, loaded = run_cli(
        ["search", "quantization", "-m", "bm25", "--data-dir", str(settings.data_dir), "--json"]
    )
    assert json.loads(out), "the lexical search found nothing"
    assert "qdrant_edge" in loaded
    assert loaded & MODELS_AND_PARSING == set()
    assert loaded & {"celery", "fastapi", "uvicorn", "sqlalchemy", "alembic"} == set()
    # The search without its LangChain class (retrievers/engine.py).
    assert loaded & {"langchain_core", "langsmith"} == set()


def test_version_prints_the_package_version_and_imports_nothing_heavy() -> None:
    from importlib.metadata import version

    import tribrid

    out, loaded = run_cli(["--version"])
    assert out == f"tribrid {version('tribrid')}\n"
    assert version("tribrid") == tribrid.__version__  # pyproject reads it from there
    assert loaded & (MODELS_AND_PARSING | SERVICES | RETRIEVERS) == set()


def test_python_dash_m_runs_the_command() -> None:
    from importlib.metadata import version

    out = subprocess.run(
        [sys.executable, "-m", "tribrid.cli", "--version"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out == f"tribrid {version('tribrid')}\n"


def test_shell_completion_script() -> None:
    # What `tribrid --show-completion` prints from bash (it asks the parent process which
    # shell it is; the variable names the shell whatever the parent).
    out, loaded = run_cli([], _TRIBRID_COMPLETE="source_bash")
    assert "_tribrid_completion" in out and "complete " in out
    assert loaded & (MODELS_AND_PARSING | SERVICES | RETRIEVERS) == set()
