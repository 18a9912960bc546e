"""``tribrid eval`` and ``tribrid tune``: thin commands over :mod:`tribrid.evaluation`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from tribrid.errors import require_extras
from tribrid.evaluation.metrics import DEFAULT_METRICS
from tribrid.evaluation.modes import ALL_MODES, EvalMode

if TYPE_CHECKING:
    from tribrid.evaluation.harness import EvalReport
    from tribrid.settings import Settings

# The harness, its report and the retriever config are imported inside the commands:
# registering `eval` and `tune` on the CLI must cost nothing (see tests/test_startup.py).

console = Console()
err_console = Console(stderr=True)

DatasetDir = Annotated[
    Path, typer.Argument(help="BEIR-format folder: corpus.jsonl, queries.jsonl, qrels/.")
]
DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        envvar="TRIBRID_DATA_DIR",
        help="Where the dataset's index is kept (use one per dataset) "
        "(default: .tribrid-eval/<dataset name>).",
    ),
]
MetricOption = Annotated[
    list[str] | None,
    typer.Option(
        "--metric",
        help="Metric to report (repeat the option; default: ndcg@10, recall@10, "
        "recall@100, mrr@10; also recall@2).",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the JSON report.")]


def _settings(dataset: Path, data_dir: Path | None) -> Settings:
    # The corpus is indexed into the data dir: by default a folder of its own, so an
    # evaluation never mixes a dataset into the user's index.
    from tribrid.settings import Settings

    return Settings(data_dir=data_dir or Path(".tribrid-eval") / dataset.resolve().name)


class _Bar:
    """Draws each phase of an evaluation as a rich progress bar."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._task: TaskID | None = None

    def phase(self, name: str, total: int | None) -> None:
        if self._task is not None:
            self._progress.update(self._task, visible=False)
        self._task = self._progress.add_task(name, total=total)

    def advance(self, steps: int = 1) -> None:
        if self._task is not None:
            self._progress.advance(self._task, steps)


def _progress() -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    )


DatasetsArg = Annotated[
    list[Path] | None,
    typer.Argument(
        help="BEIR-format folder(s): corpus.jsonl, queries.jsonl, qrels/. Several make a suite "
        "report."
    ),
]


def eval_command(
    datasets: DatasetsArg = None,
    suite: Annotated[
        Path | None,
        typer.Option(
            "--suite",
            help="A file listing dataset folders, one per line (# comments): evaluate them all "
            "and write one suite report.",
        ),
    ] = None,
    split: Annotated[str, typer.Option("--split", help="Qrels split to evaluate.")] = "test",
    modes: Annotated[
        list[EvalMode] | None,
        typer.Option("--modes", "-m", help="Modes to evaluate (repeat the option) (default: all)."),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", help="Also evaluate this tuned retriever config (mode 'tuned')."),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Write <output>.md, <output>.json and <output>.png "
            "(default: <data dir>/eval-<split>); for a suite, <output>.md and .json "
            "(default: suite-<split>).",
        ),
    ] = None,
    depth: Annotated[
        int, typer.Option("--depth", min=100, help="Chunks fetched per channel and query.")
    ] = 300,
    calibrate: Annotated[
        bool | None,
        typer.Option(
            "--calibrate/--no-calibrate",
            help="Binary recall against float per encoding (default: when binary is evaluated).",
        ),
    ] = None,
    target_recall: Annotated[
        float, typer.Option("--target-recall", min=0.0, max=1.0, help="Binary recall@10 target.")
    ] = 0.98,
    max_queries: Annotated[
        int | None, typer.Option("--max-queries", min=1, help="Only the first N judged queries.")
    ] = None,
    metric: MetricOption = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            envvar="TRIBRID_DATA_DIR",
            help="Where the dataset's index is kept (default: .tribrid-eval/<dataset name>); "
            "for several datasets, each gets <data dir>/<dataset name>.",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Measure every channel and fusion on BEIR datasets: quality, latency, index size.

    The corpus is indexed once into the data dir (the ledger skips it next time). Chunk
    hits are aggregated to documents by their best chunk before nDCG@10, Recall@10/100
    and MRR@10 are computed (pytrec_eval). Several datasets (or ``--suite``) also give
    one suite report: every mode per collection and as means, the default's gain over
    its best single channel, and paired randomization tests.
    """
    require_extras("`tribrid eval`", "eval", "index", "parse")
    folders = list(datasets or [])
    if suite is not None:
        from tribrid.evaluation.suite import read_suite

        folders += read_suite(suite)
    if not folders:
        raise typer.BadParameter("give a dataset folder, several, or --suite FILE")
    chosen = [m.value for m in (modes or ALL_MODES)]
    from tribrid.evaluation.harness import evaluate
    from tribrid.evaluation.report import markdown_table, write_report
    from tribrid.retrievers.config import RetrieverConfig

    tuned = RetrieverConfig.load(config) if config else None
    several = len(folders) > 1

    def run(dataset: Path) -> EvalReport:
        name = dataset.resolve().name
        settings = _settings(dataset, data_dir / name if several and data_dir else data_dir)
        with _progress() as progress:
            report = evaluate(
                dataset,
                settings,
                modes=chosen,
                split=split,
                config=tuned,
                depth=depth,
                calibrate=calibrate,
                target_recall=target_recall,
                max_queries=max_queries,
                metrics=tuple(metric or DEFAULT_METRICS),
                progress=_Bar(progress),
            )
        prefix = settings.data_dir / f"eval-{split}" if several or output is None else output
        paths = write_report(report, prefix)
        if not as_json:
            console.print(markdown_table(report), highlight=False, soft_wrap=True)
            console.print(
                "wrote "
                + ", ".join(str(p) for p in paths.values())
                + f" ({report.duration_s:.0f} s)",
                highlight=False,
            )
        return report

    if not several:
        report = run(folders[0])
        if as_json:
            typer.echo(json.dumps(report.to_dict()))
        return
    from tribrid.evaluation.suite import evaluate_suite, write_suite

    result = evaluate_suite(folders, run, command=" ".join(["tribrid", *sys.argv[1:]]))
    paths = write_suite(result, output or Path(f"suite-{split}"))
    if as_json:
        typer.echo(json.dumps(result.to_dict()))
        return
    console.print(
        "wrote " + ", ".join(str(p) for p in paths.values()), highlight=False, soft_wrap=True
    )


def tune_command(
    dataset: DatasetDir,
    train_split: Annotated[str, typer.Option("--train-split", help="Split searched.")] = "train",
    test_split: Annotated[
        str, typer.Option("--test-split", help="Split reported, never searched.")
    ] = "test",
    holdout: Annotated[
        float | None,
        typer.Option(
            "--holdout",
            min=0.01,
            max=0.99,
            help="No train split? Tune on this fraction of the test queries (fixed by a hash "
            "of their ids) and report on the rest.",
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="Where to write the config (default: <data dir>/tuned.json)."
        ),
    ] = None,
    objective: Annotated[
        str, typer.Option("--objective", help="Metric maximised on the train split.")
    ] = "ndcg@10",
    target_recall: Annotated[
        float,
        typer.Option(
            "--target-recall",
            min=0.0,
            max=1.0,
            help="Binary recall@10 the oversampling must reach.",
        ),
    ] = 0.98,
    max_queries: Annotated[
        int | None,
        typer.Option("--max-queries", min=1, help="Only the first N judged queries per split."),
    ] = None,
    metric: MetricOption = None,
    data_dir: DataDir = None,
    as_json: JsonOption = False,
) -> None:
    """Tune fusion (method, weights, RRF k, prefetch) on the train split; report train and test.

    Writes a config that `tribrid search --config` and `tribrid.as_retriever(config=...)`
    load. The test split is scored once for the chosen setting, never searched.
    """
    require_extras("`tribrid tune`", "eval", "index", "parse")
    from tribrid.evaluation.tuning import tune

    settings = _settings(dataset, data_dir)
    with _progress() as progress:
        report, _ = tune(
            dataset,
            settings,
            train_split=train_split,
            test_split=test_split,
            holdout=holdout,
            output=output,
            objective=objective,
            target_recall=target_recall,
            max_queries=max_queries,
            metrics=tuple(metric or DEFAULT_METRICS),
            progress=_Bar(progress),
        )
    if as_json:
        typer.echo(json.dumps(report.to_dict()))
        return
    table = Table(
        title=f"tune {dataset.name}: {report.trials} settings tried on {report.train_split}"
    )
    table.add_column("setting")
    metric_names = list(report.train)
    for split in ("train", "test"):
        for name in metric_names:
            table.add_column(f"{split} {name}", justify="right")
    for label, train, test in (
        ("default (the retriever's defaults)", report.default_train, report.default_test),
        ("tuned", report.train, report.test),
    ):
        table.add_row(
            label,
            *(f"{train[m]:.4f}" for m in metric_names),
            *(f"{test[m]:.4f}" for m in metric_names),
        )
    console.print(table)
    console.print(f"best: {json.dumps(report.best)}", highlight=False, soft_wrap=True)
    if report.binary.get("encoding"):
        reached = report.binary.get("oversampling")
        console.print(
            f"binary {report.binary['encoding']}/{report.binary['query_encoding']}: "
            + (
                f"oversampling {reached:g} reaches recall@10 >= {report.binary['target_recall']}"
                if reached
                else f"no oversampling tried reaches recall@10 {report.binary['target_recall']}"
            ),
            highlight=False,
        )
    console.print(f"wrote {report.config_path} ({report.duration_s:.0f} s)", highlight=False)


def register(cli: typer.Typer) -> None:
    """Add the evaluation commands to the ``tribrid`` CLI."""
    cli.command("eval")(eval_command)
    cli.command("tune")(tune_command)
