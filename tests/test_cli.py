"""The ``tribrid`` command as a user runs it: a real process, real models, real store."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from tests.support.ledger import chunks_for
from tribrid.cli import cli
from tribrid.factory import build_encoders, build_store
from tribrid.ledger import open_ledger
from tribrid.settings import Settings

pytestmark = pytest.mark.slow  # real processes that load the real models

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "docs"
TRIBRID = Path(sys.executable).with_name("tribrid")


def run(*args: str, data_dir: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run the installed ``tribrid`` command in its own process."""
    env = {**os.environ, "TRIBRID_DATA_DIR": str(data_dir)}
    return subprocess.run(
        [str(TRIBRID), *args], capture_output=True, text=True, env=env, timeout=timeout, check=False
    )


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("cli") / "docs"
    shutil.copytree(EXAMPLES, root)
    data_dir = root.parent / "data"
    result = run("ingest", str(root), "--json", data_dir=data_dir)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["counts"]["indexed"] == 6 and report["counts"]["failed"] == 0
    return root, data_dir


def test_ingest_again_reports_everything_unchanged(indexed: tuple[Path, Path]) -> None:
    root, data_dir = indexed
    result = run("ingest", str(root), "--json", data_dir=data_dir)
    assert result.returncode == 0, result.stderr
    counts = json.loads(result.stdout)["counts"]
    assert (counts["unchanged"], counts["indexed"], counts["chunks_embedded"]) == (6, 0, 0)
    table = run("ingest", str(root), data_dir=data_dir)
    assert table.returncode == 0, table.stderr
    for column in ("indexed", "unchanged", "failed", "deleted", "chunks/s"):
        assert column in table.stdout


def invoke(*args: str, data_dir: Path) -> Result:
    """Run the CLI in this process (models stay loaded between calls)."""
    result = CliRunner().invoke(cli, [*args, "--data-dir", str(data_dir)])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def test_search_json_in_every_mode(indexed: tuple[Path, Path]) -> None:
    _, data_dir = indexed
    for mode in ("hybrid", "dense", "splade", "bm25", "binary"):
        result = invoke(
            "search",
            "reciprocal rank fusion constant k",
            "--mode",
            mode,
            "-k",
            "2",
            "--json",
            data_dir=data_dir,
        )
        assert result.exit_code == 0, result.output
        rows = json.loads(result.stdout)
        assert len(rows) == 2
        assert rows[0]["path"] == "rank-fusion.md", (mode, rows)
        assert rows[0]["score"] >= rows[1]["score"]


def test_search_table_shows_path_score_and_snippet(indexed: tuple[Path, Path]) -> None:
    _, data_dir = indexed
    result = invoke("search", "blossom-end rot", "-k", "1", data_dir=data_dir)
    assert result.exit_code == 0, result.output
    assert "tomato-growing.rst" in result.stdout and "calcium" in result.stdout


def test_status_json_counts_and_runs(indexed: tuple[Path, Path]) -> None:
    _, data_dir = indexed
    result = invoke("status", "--json", data_dir=data_dir)
    assert result.exit_code == 0, result.output
    status = json.loads(result.stdout)
    assert status["counts"]["indexed"] == 6 and status["counts"]["failed"] == 0
    assert status["chunks"] > 0 and status["failures"] == []


def test_status_lists_failed_files_with_reasons(tmp_path: Path) -> None:
    root = tmp_path / "docs"
    root.mkdir()
    (root / "empty.txt").write_text("")
    (root / "note.md").write_text("# Note\n\nA short note about lighthouses.")
    assert invoke("ingest", str(root), data_dir=tmp_path / "d").exit_code == 0
    result = invoke("status", data_dir=tmp_path / "d")
    assert result.exit_code == 0, result.output
    assert "empty.txt" in result.stdout and "empty" in result.stdout


def test_usage_errors_exit_non_zero_with_one_line(tmp_path: Path) -> None:
    result = run("ingest", str(tmp_path / "missing"), data_dir=tmp_path / "d")
    assert result.returncode != 0
    assert "missing is not a folder" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    result = run("search", "x", "--mode", "nonsense", data_dir=tmp_path / "d")
    assert result.returncode != 0 and "nonsense" in result.stderr


def test_bad_setting_names_the_variable(tmp_path: Path) -> None:
    env = {**os.environ, "TRIBRID_DATA_DIR": str(tmp_path), "TRIBRID_STORE__BACKEND": "mongo"}
    result = subprocess.run(
        [str(TRIBRID), "status"], capture_output=True, text=True, env=env, timeout=120, check=False
    )
    assert result.returncode == 2
    assert (
        "TRIBRID_STORE__BACKEND" in result.stderr
        and "'edge', 'qdrant' or 'remote'" in result.stderr
    )
    assert len(result.stderr.strip().splitlines()) == 1


def test_busy_store_names_the_path_and_fails_fast(indexed: tuple[Path, Path]) -> None:
    _, data_dir = indexed
    settings = Settings(data_dir=data_dir)
    holder = build_store(settings, build_encoders(settings))  # this process holds the store
    try:
        result = run("search", "anything", data_dir=data_dir)
        assert result.returncode == 1
        assert (
            str((data_dir / "store").resolve()) in result.stderr
            or str(data_dir / "store") in result.stderr
        )
        assert len(result.stderr.strip().splitlines()) == 1
    finally:
        holder.close()
    assert run("status", data_dir=data_dir).returncode == 0


def test_status_lists_members_under_their_archive(tmp_path: Path) -> None:
    data_dir = tmp_path / "d"
    data_dir.mkdir()
    with open_ledger(f"sqlite:///{(data_dir / 'ledger.db').resolve()}") as ledger:
        source = ledger.ensure_source("local:/docs", kind="local", location="local:/docs")
        for key in ("box.zip!/a.md", "box.zip!/in.zip!/b.md"):
            ledger.record_indexed(
                source,
                key,
                path=key,
                size=1,
                mtime_ns=1,
                content_hash="h",
                chunks=chunks_for("local:/docs", key, f"text of {key}"),
            )
        ledger.record_failed(
            source,
            "box.zip!/..%2Fup.txt",
            path="x",
            size=0,
            mtime_ns=1,
            content_hash=None,
            kind="unsafe_member",
            message="refused",
        )
        ledger.record_failed(
            source,
            "bomb.zip",
            path="bomb.zip",
            size=9,
            mtime_ns=1,
            content_hash=None,
            kind="too_large",
            message="ratio",
        )
    result = invoke("status", data_dir=data_dir)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    archive = next(i for i, line in enumerate(lines) if "box.zip (3 members)" in line)
    assert "indexed" in lines[archive]
    members = lines[archive + 1 : archive + 4]
    assert ["..%2Fup.txt" in members[0], "a.md" in members[1], "in.zip!/b.md" in members[2]] == [
        True,
        True,
        True,
    ]
    assert all("└" in line for line in members)
    assert "unsafe_member" in members[0]
    status = json.loads(invoke("status", "--json", data_dir=data_dir).stdout)
    assert [(a["key"], a["status"], a["member_count"]) for a in status["archives"]] == [
        ("box.zip", "indexed", 3)
    ]


def test_search_filter_keeps_only_matching_chunks(indexed: tuple[Path, Path]) -> None:
    _, data_dir = indexed
    query = "reciprocal rank fusion constant k"
    for filter_json, allowed in (
        ('{"filename": "tomato-growing.rst"}', {"tomato-growing.rst"}),
        (
            '{"filename": ["sourdough.csv", "lexical-search.html"]}',
            {"sourdough.csv", "lexical-search.html"},
        ),
        ('{"chunk_index": {"gte": 0, "lt": 1}}', None),
    ):
        result = invoke("search", query, "--filter", filter_json, "--json", data_dir=data_dir)
        assert result.exit_code == 0, result.output
        rows = json.loads(result.stdout)
        assert rows, filter_json
        if allowed is not None:
            assert {r["path"] for r in rows} == allowed
        else:
            assert {r["chunk_index"] for r in rows} == {0}
    unfiltered = json.loads(invoke("search", query, "--json", data_dir=data_dir).stdout)
    assert unfiltered[0]["path"] == "rank-fusion.md"  # what the filters kept out


@pytest.mark.parametrize(
    ("filter_json", "expected"),
    [
        ('{"filenme": "a.md"}', "'filenme' is not a payload field; did you mean 'filename'"),
        ('{"page": {"gte": "two"}}', "filter on 'page': range bound gte='two' is not a number"),
        ('{"page": {"above": 2}}', "filter on 'page': a range takes gt, gte, lt and/or lte"),
        ('{"page": true}', "filter on 'page': boolean values cannot be filtered on"),
        ('{"page": ', "--filter is not JSON"),
        ("[1, 2]", "--filter must be a JSON object"),
    ],
)
def test_search_filter_errors_name_the_field(
    filter_json: str, expected: str, tmp_path: Path
) -> None:
    result = invoke("search", "anything", "--filter", filter_json, data_dir=tmp_path / "d")
    assert result.exit_code == 2
    assert expected in " ".join(result.output.split()), result.output


def test_verbose_ingest_prints_one_line_per_file_and_json_lines_parse(tmp_path: Path) -> None:
    root = tmp_path / "docs"
    root.mkdir()
    (root / "note.md").write_text("# Note\n\nA short note about lighthouses.\n")
    (root / "other.txt").write_text("Another note, about tides and harbours.\n")
    (root / "broken.pdf").write_bytes(b"%PDF-1.4 this is not really a pdf")
    data_dir = tmp_path / "data"
    first = run("--log-format", "json", "-v", "ingest", str(root), "--json", data_dir=data_dir)
    assert first.returncode == 0, first.stderr
    records = [json.loads(line) for line in first.stderr.splitlines() if line.strip()]
    outcomes = {r["document_key"]: r for r in records if r["logger"] == "tribrid.documents"}
    assert {k: r["outcome"] for k, r in outcomes.items()} == {
        "note.md": "indexed",
        "other.txt": "indexed",
        "broken.pdf": "failed",
    }
    failed = outcomes["broken.pdf"]
    assert failed["level"] == "WARNING" and failed["kind"] == "corrupt"
    assert "broken.pdf: failed (corrupt): PDF structure is damaged" in failed["message"]
    run_id = json.loads(first.stdout)["run_id"]
    assert {r["run_id"] for r in outcomes.values()} == {run_id}
    # Text, one line per file with its outcome; nothing else at -v from other libraries.
    again = run("-v", "ingest", str(root), data_dir=data_dir)
    assert again.returncode == 0, again.stderr
    lines = [line for line in again.stderr.splitlines() if "tribrid.documents" in line]
    assert sorted(lines) == sorted(
        f"INFO tribrid.documents: {key}: unchanged [run={run_id + 1} doc={key}]"
        for key in ("note.md", "other.txt", "broken.pdf")
    )
    # Without -v only the failure is told (a failed file stays failed until it changes).
    quiet = run("ingest", str(root), "--retry-failed", data_dir=data_dir)
    assert quiet.returncode == 0, quiet.stderr
    told = [line for line in quiet.stderr.splitlines() if "tribrid.documents" in line]
    assert len(told) == 1 and told[0].startswith("WARNING tribrid.documents: broken.pdf: failed")
    assert run("-q", "ingest", str(root), "--retry-failed", data_dir=data_dir).stderr == ""


def test_a_named_source_moves_is_rebuilt_renamed_and_removed(tmp_path: Path) -> None:
    root = tmp_path / "srv" / "docs"
    shutil.copytree(EXAMPLES, root)
    data_dir = tmp_path / "data"
    first = run("ingest", str(root), "--source", "docs", "--json", data_dir=data_dir)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["counts"]["indexed"] == 6

    moved = tmp_path / "documents"  # the folder, mounted elsewhere
    shutil.move(root, moved)
    again = run("ingest", str(moved), "--source", "docs", "--json", data_dir=data_dir)
    assert again.returncode == 0, again.stderr
    counts = json.loads(again.stdout)["counts"]
    assert (counts["chunks_embedded"], counts["unchanged"], counts["deleted"]) == (0, 6, 0)
    listed = json.loads(run("sources", "list", "--json", data_dir=data_dir).stdout)
    assert [(s["name"], s["location"], s["documents"]) for s in listed] == [
        ("docs", f"local:{moved.resolve().as_posix()}", 6)
    ]

    rebuilt = run(
        "ingest", str(moved), "--source", "docs", "--recreate", "--json", data_dir=data_dir
    )
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert json.loads(rebuilt.stdout)["counts"]["indexed"] == 6
    store = data_dir / "store"
    assert json.loads((store / "tribrid-live.json").read_text()) == {"generation": 1}
    assert (store / "generations" / "1" / "edge_config.json").exists()
    assert not (store / "edge_config.json").exists()  # generation 0 is gone
    hits = json.loads(run("search", "blossom-end rot", "--json", data_dir=data_dir).stdout)
    assert hits

    renamed = run("sources", "rename", "docs", "handbook", data_dir=data_dir)
    assert renamed.returncode == 0, renamed.stderr
    removed = run("sources", "remove", "handbook", "--yes", data_dir=data_dir)
    assert removed.returncode == 0, removed.stderr
    assert "6 document(s)" in removed.stdout
    assert json.loads(run("sources", "list", "--json", data_dir=data_dir).stdout) == []
    status = json.loads(run("status", "--json", data_dir=data_dir).stdout)
    assert status["chunks"] == 0
