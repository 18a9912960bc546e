"""``evaluate`` and ``tune`` end to end on a tiny BEIR folder, with the real models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tribrid.encoders import EncoderSet
from tribrid.errors import ConfigError
from tribrid.evaluation import ALL_MODES, evaluate, write_report
from tribrid.evaluation.tuning import holdout_split, tune
from tribrid.factory import build_encoders, build_store
from tribrid.retrievers import HybridRetriever
from tribrid.retrievers.config import RetrieverConfig
from tribrid.settings import Settings
from tribrid.store.base import BinaryEncoding, QueryEncoding

pytestmark = pytest.mark.slow

DOCS = {
    "otter": ("River otters", "River otters eat fish and crayfish in cold streams."),
    "quokka": ("Quokkas", "The quokka is a small marsupial from Rottnest Island."),
    "binary": ("Binary quantization", "Binary quantization stores one bit per dimension."),
    "bm25": ("BM25", "BM25 ranks documents by term frequency and inverse document frequency."),
    "volcano": ("Volcanoes", "A volcano erupts molten lava, ash and gases."),
    "tea": ("Green tea", "Green tea is brewed from unoxidized Camellia sinensis leaves."),
    "chess": ("Chess openings", "The Sicilian Defence is a popular chess opening."),
    "comet": ("Comets", "A comet is an icy body that grows a tail near the Sun."),
}
TRAIN = {
    "t1": ("what do otters eat", "otter"),
    "t2": ("Rottnest Island marsupial", "quokka"),
    "t3": ("molten lava eruption", "volcano"),
}
TEST = {
    "s1": ("one bit per dimension", "binary"),
    "s2": ("Camellia sinensis leaves", "tea"),
    "s3": ("Sicilian Defence opening", "chess"),
}


def _jsonl(path: Path, rows: list[dict[str, str]]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Settings]:
    root = tmp_path_factory.mktemp("beir")
    dataset = root / "tiny"
    (dataset / "qrels").mkdir(parents=True)
    _jsonl(
        dataset / "corpus.jsonl", [{"_id": k, "title": t, "text": x} for k, (t, x) in DOCS.items()]
    )
    queries = {**TRAIN, **TEST}
    _jsonl(dataset / "queries.jsonl", [{"_id": q, "text": t} for q, (t, _) in queries.items()])
    for split, rows in (("train", TRAIN), ("test", TEST)):
        lines = [f"{q}\t{d}\t1" for q, (_, d) in rows.items()]
        (dataset / "qrels" / f"{split}.tsv").write_text(
            "query-id\tcorpus-id\tscore\n" + "\n".join(lines) + "\n"
        )
    return dataset, Settings(data_dir=root / "index", models={"torch_threads": 1})


@pytest.fixture(scope="module")
def encoders(tiny: tuple[Path, Settings]) -> EncoderSet:
    """The real models, loaded once for the module (loading dominates these tests)."""
    return build_encoders(tiny[1])


def test_evaluate_every_mode_then_reuse_the_index(
    tiny: tuple[Path, Settings], encoders: EncoderSet, tmp_path: Path
) -> None:
    dataset, settings = tiny
    encodings = [
        (BinaryEncoding.ONE_BIT, QueryEncoding.BINARY),
        (BinaryEncoding.TWO_BITS, QueryEncoding.SCALAR8),
    ]
    report = evaluate(
        dataset, settings, oversampling=(1.0, 4.0), encodings=encodings, encoders=encoders
    )
    assert report.index["indexed"] == len(DOCS)
    assert (report.documents, report.queries) == (len(DOCS), len(TEST))
    assert list(report.modes) == [m.value for m in ALL_MODES]
    for result in report.modes.values():
        # Eight documents and 100 ranks: every relevant document is found, once.
        assert result.metrics["recall@10"] == 1.0
        assert 0.0 < result.metrics["ndcg@10"] <= 1.0
        assert result.median_ms > 0
    # Each test query shares rare words with exactly its document.
    assert report.modes["bm25"].metrics["mrr@10"] == 1.0
    assert report.sizes["dense"]["estimate_mb"] == pytest.approx(
        report.chunks * 384 * 4 / 2**20, abs=1e-3
    )
    # Two encodings × two factors; 4 × 10 candidates cover all points, so recall is exact.
    assert len(report.binary) == 4
    assert all(r.recall == 1.0 for r in report.binary if r.oversampling == 4.0)
    paths = write_report(report, tmp_path / "eval")
    assert paths["png"].read_bytes()[:4] == b"\x89PNG"
    assert "| hybrid-rrf |" in paths["markdown"].read_text()
    assert json.loads(paths["json"].read_text())["modes"]["dense"]["metrics"]["recall@10"] == 1.0

    again = evaluate(dataset, settings, modes=["bm25"], calibrate=False, encoders=encoders)
    # The ledger knows every record: nothing is chunked or encoded again.
    assert again.index["indexed"] == 0 and again.index["chunks_embedded"] == 0
    assert again.modes["bm25"].metrics == report.modes["bm25"].metrics


def test_tune_writes_a_config_the_retriever_loads(
    tiny: tuple[Path, Settings], encoders: EncoderSet, tmp_path: Path
) -> None:
    dataset, settings = tiny
    target = tmp_path / "tuned.json"
    report, config = tune(
        dataset, settings, output=target, oversampling=(1.0, 4.0), encoders=encoders
    )
    assert (report.train_queries, report.test_queries) == (len(TRAIN), len(TEST))
    assert report.trials > 100
    # The default setting is among those tried, so the chosen one is at least as good on train.
    assert report.train["ndcg@10"] >= report.default_train["ndcg@10"]
    # 10 candidates from the codes cover all the points: the smallest factor is enough.
    assert report.binary["oversampling"] == 1.0 and config.retriever.oversampling == 1.0
    assert RetrieverConfig.load(target) == config
    store = build_store(settings, encoders)
    with HybridRetriever.from_config(target, store=store, encoders=encoders, k=3) as retriever:
        assert retriever.fusion == config.retriever.fusion
        assert {c.value: w for c, w in retriever.channels.items()} == {
            c: w for c, w in config.retriever.channels.items()
        }
        assert retriever.prefetch_k == config.retriever.prefetch_k
        docs = retriever.invoke("Camellia sinensis leaves")
    store.close()
    # document_key is bookkeeping, out of the metadata (issue 14); path names the record.
    assert docs and docs[0].metadata["path"] == "tea"


def test_tune_refuses_to_search_the_test_split(tiny: tuple[Path, Settings], tmp_path: Path) -> None:
    dataset, settings = tiny
    with pytest.raises(ConfigError, match=r"pass --holdout 0\.5"):
        tune(dataset, settings, train_split="dev")
    with pytest.raises(ConfigError, match="tuning on the test split"):
        tune(dataset, settings, train_split="test")


def test_holdout_split_is_deterministic_and_disjoint() -> None:
    ids = [f"query_{i}" for i in range(1000)]
    train, test = holdout_split(ids, 0.5)
    assert set(train).isdisjoint(test) and len(train) + len(test) == 1000
    assert 400 < len(train) < 600
    assert holdout_split(list(reversed(ids)), 0.5)[0] == list(reversed(train))


def test_cli_eval_and_search_with_a_config(tiny: tuple[Path, Settings], tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from tribrid.cli import cli

    dataset, settings = tiny
    data_dir = str(settings.data_dir)
    runner = CliRunner()
    # BM25 alone encodes no query with a neural model; the index is the module's.
    out = tmp_path / "bm25"
    result = runner.invoke(
        cli, ["eval", str(dataset), "--data-dir", data_dir, "-m", "bm25", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "| bm25 |" in result.output
    assert json.loads(out.with_suffix(".json").read_text())["modes"]["bm25"]["metrics"]
    config = RetrieverConfig.model_validate(
        {"retriever": {"channels": {"bm25": 1.0}, "fusion": "rrf"}}
    ).save(tmp_path / "bm25.json")
    result = runner.invoke(
        cli,
        ["search", "Sicilian Defence", "--config", str(config), "--data-dir", data_dir, "--json"],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)[0]["path"] == "chess"
    result = runner.invoke(cli, ["search", "x", "--config", str(config), "-m", "dense"])
    assert result.exit_code == 2 and "leave out --mode" in result.output


def test_cli_eval_of_several_datasets_writes_a_suite_report(
    tiny: tuple[Path, Settings], tmp_path: Path
) -> None:
    import shutil

    from typer.testing import CliRunner

    from tribrid.cli import cli

    dataset, _ = tiny
    other = tmp_path / "tiny-copy"
    shutil.copytree(dataset, other)
    suite = tmp_path / "suite.txt"
    suite.write_text(f"{dataset}\n# a comment\ntiny-copy\n")
    out = tmp_path / "suite"
    result = CliRunner().invoke(
        cli,
        [
            "eval",
            "--suite",
            str(suite),
            "--data-dir",
            str(tmp_path / "idx"),
            "-m",
            "bm25",
            "-m",
            "splade",
            "-m",
            "default",
            "-o",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(out.with_suffix(".json").read_text())
    assert set(report["reports"]) == {"tiny", "tiny-copy"}
    # Each dataset got a data dir of its own; the copy scores exactly as the original.
    assert (tmp_path / "idx" / "tiny" / "eval-test.md").is_file()
    first, second = (report["reports"][n]["modes"]["default"] for n in ("tiny", "tiny-copy"))
    assert first["metrics"] == second["metrics"] and first["per_query"]
    assert set(report["p_values"]["tiny"]) == {"bm25", "splade"}
    text = out.with_suffix(".md").read_text()
    assert "### `default` against its best single channel (nDCG@10)" in text
    assert "| tiny-copy |" in text


def test_a_config_with_feedback_and_spread_weights_is_evaluated_as_the_retriever_runs(
    tiny: tuple[Path, Settings], encoders: EncoderSet
) -> None:
    dataset, settings = tiny
    config = RetrieverConfig.model_validate(
        {
            "retriever": {
                "weighting": "spread",
                "feedback": {"documents": 2, "dense": 0.3, "bm25": 0.5, "terms": 5},
            }
        }
    )
    report = evaluate(
        dataset, settings, modes=["hybrid-dbsf"], config=config, calibrate=False, encoders=encoders
    )
    tuned = report.modes["tuned"]
    assert tuned.metrics["recall@10"] == 1.0 and tuned.per_query
    # The feedback round is part of the measured latency.
    assert tuned.median_ms > report.modes["hybrid-dbsf"].median_search_ms
    assert tuned.settings["feedback"]["documents"] == 2
    # The retriever loads the same config and runs the same two rounds.
    store = build_store(settings, encoders)
    try:
        retriever = HybridRetriever.from_config(config, store=store, encoders=encoders, k=1)
        for text, expected in TEST.values():
            (doc,) = retriever.invoke(text)
            assert doc.metadata["path"] == expected
    finally:
        store.close()
