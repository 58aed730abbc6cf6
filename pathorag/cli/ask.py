"""`pathorag ask`: a question answered from the indexed textbooks, with citations."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from pathorag.cli.common import CliError, answering_agent, console, evidence_lines, load_settings, out, resolve_book, user_errors


def ask(
    ctx: typer.Context,
    question: Annotated[str, typer.Argument(help="The pathology question.")],
    image: Annotated[Optional[list[Path]], typer.Option(help="Histology image (repeatable).")] = None,
    choices: Annotated[
        Optional[list[str]], typer.Option(help="Multiple-choice options, in order: --choices 'A text' 'B text' ...")
    ] = None,
    book: Annotated[Optional[list[str]], typer.Option(help="Only this book (repeatable).")] = None,
    organ: Annotated[Optional[list[str]], typer.Option(help="Only this organ system (repeatable).")] = None,
    thread: Annotated[Optional[str], typer.Option(help="Conversation thread id: follow-ups keep its context.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Answer a pathology question from the indexed textbooks, with citations to book pages."""
    from agent.settings import AgentSettings
    from rag.page_index import PageIndex

    with user_errors():
        if ctx.args and not choices:
            raise CliError(f"unexpected argument(s) {ctx.args}; quote the question, and give options after --choices")
        # `--choices "A text" "B text"`: the options after the first arrive as extra arguments.
        choices = [*(choices or []), *ctx.args]
        settings = load_settings(AgentSettings)
        index = PageIndex(settings)
        try:
            books = [resolve_book(index, ref) for ref in book or []]
            with answering_agent(settings, index) as agent:
                result = agent.run(question, list(image or []), choices, thread, books, list(organ or []))
        finally:
            index.close()
    if as_json:
        out.print_json(result.model_dump_json())
        return
    _print_result(result)


def _print_result(result) -> None:
    from agent.trace import describe_event

    label = "[yellow]evidence only[/yellow] (no language model generated this answer)" if result.evidence_only else "answer"
    out.print(f"[bold]{label}[/bold]")
    out.print(result.answer, highlight=False)
    if result.choice:
        out.print(f"choice: {result.choice}" + (f"  confidence {result.confidence:.2f}" if result.confidence is not None else ""))
    for letter, support in result.option_support.items():
        out.print(f"  option {letter}: support {support:.2f}", highlight=False)
    if result.rationale:
        out.print(f"rationale: {result.rationale}", highlight=False)
    if result.citations:
        out.print("[bold]citations[/bold]")
    for citation in result.citations:
        where = f"page {citation.page_label or citation.page} (pdf page {citation.page})"
        out.print(f"  [{citation.ref}] {citation.title}, {where}  score {citation.score:.3f}", highlight=False)
        for line in evidence_lines(citation):
            out.print(f"      {line}", highlight=False)
    out.print("[bold]trace[/bold]")
    for line in filter(None, map(describe_event, result.trace)):
        out.print(f"  {line}", highlight=False)
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/yellow] {warning}", highlight=False)
