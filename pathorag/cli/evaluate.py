"""`pathorag eval` and `pathorag eval-convert`: benchmarks on question files, and their converters."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from pathorag.cli.common import CliError, console, load_settings, out, progress_bars, user_errors
from pathorag.converters import ConvertError, convert_file
from pathorag.evaluation import EvalError, EvalOptions, fold_table, report_lines, report_table, run_eval


def eval_command(
    questions: Annotated[list[Path], typer.Argument(help="Question files (JSON lines); add a control file such as out_of_corpus_mcq.jsonl.")],
    book_dir: Annotated[Optional[Path], typer.Option("--book-dir", help="Folder of the PDFs the items name (default: each questions file's folder).")] = None,
    mode: Annotated[str, typer.Option(help="retrieval (page recall, MRR, nDCG) or answer (MCQ accuracy of the agent).")] = "retrieval",
    channels: Annotated[Optional[list[str]], typer.Option("--channels", help="Only these channels (repeatable): bm25, text, page, image, figure.")] = None,
    top_k: Annotated[int, typer.Option("--top-k", min=1, max=200, help="Pages retrieved per question (at least 10 are).")] = 10,
    out_path: Annotated[Optional[Path], typer.Option("--out", help="Write the JSON report here.")] = None,
    page_map: Annotated[Optional[Path], typer.Option("--page-map", help="NAME.page_map.json: re-target items of another PDF of the same book through orig_page.")] = None,
    fold_by: Annotated[Optional[str], typer.Option("--folds", help="book or chapter: report per book with plain baselines beside; with --sweep, each value is chosen on the other folds.")] = None,
    sweep: Annotated[Optional[list[str]], typer.Option("--sweep", help="NAME=V1,V2 (repeatable; a query-time setting, e.g. weight_text=0.5,0.7): values to choose between on held-out folds.")] = None,
) -> None:
    """Benchmark retrieval or answers on question files; prints a table, writes a JSON report."""
    from server.settings import ServerSettings

    with user_errors():
        options = EvalOptions(
            mode=mode, channels=tuple(channels) if channels else None, top_k=top_k, book_dir=book_dir,
            page_map=page_map, folds=fold_by, sweep=tuple(sweep or ()),
        )
        settings = load_settings(ServerSettings)
        try:
            with progress_bars() as progress:
                task = progress.add_task("eval", total=None, rate="")

                def update(label: str, done: int, total: int) -> None:
                    progress.update(task, description=label, completed=done, total=total)

                report = run_eval(settings, questions, options, update)
        except EvalError as error:
            raise CliError(str(error)) from None
    out.print(report_table(report))
    if "folds" in report:
        out.print(fold_table(report["folds"]))
    for line in report_lines(report):
        out.print(line, highlight=False)
    if out_path:
        out_path.write_text(json.dumps(report, indent=1))
        console.print(f"report written to {out_path}")


def eval_convert(
    source: Annotated[Path, typer.Argument(help="PathVQA / PathMMU file (JSON list, dict of lists, or JSON lines).")],
    target: Annotated[Path, typer.Argument(help="Output question file (JSON lines).")],
    fmt: Annotated[str, typer.Option("--from", help="pathvqa or pathmmu.")] = "pathvqa",
) -> None:
    """Convert a PathVQA or PathMMU file into the question schema of `pathorag eval`."""
    with user_errors():
        try:
            count = convert_file(fmt, source, target)
        except (ConvertError, OSError, json.JSONDecodeError) as error:
            raise CliError(f"{source}: {error}") from None
    console.print(f"{count} items written to {target}")
