"""The `pathorag` command line: index textbooks and search their pages."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

import rag  # noqa: F401  (torch/torchvision compatibility before any model library is imported)
from rag.settings import Settings

app = typer.Typer(help="Pathology textbook RAG: index books, search pages.", no_args_is_help=True)
index_app = typer.Typer(help="Add, list, remove and rebuild indexed textbooks.", no_args_is_help=True)
app.add_typer(index_app, name="index")
console = Console(stderr=True)
out = Console()


class CliError(Exception):
    """An error whose message is all the user needs."""


@contextmanager
def _user_errors() -> Iterator[None]:
    from rag.encoders.devices import EncoderLoadError
    from rag.encoders.served import EncoderServiceError
    from rag.page_index import EncoderMismatchError
    from rag.search import SearchError
    from rag.store import StoreError

    try:
        yield
    except (
        CliError, EncoderLoadError, EncoderServiceError, EncoderMismatchError, SearchError, StoreError, KeyError
    ) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        console.print(f"[red]error:[/red] {message}", highlight=False)
        raise typer.Exit(2) from None


def _settings() -> Settings:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return Settings()


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


def _page_progress(progress: Progress, description: str):
    task = progress.add_task(description, total=None, rate="")

    def update(done: int, total: int) -> None:
        progress.update(task, completed=done, total=total)
        speed = progress.tasks[task].speed
        progress.update(task, rate=f"{speed:.2f} pages/s" if speed else "")

    return update


def _print_report(report) -> None:
    if report.status == "failed":
        console.print(f"[red]failed[/red] {report.error}", highlight=False)
        return
    line = f"{report.status}: {report.path.name} (book {report.book_id}"
    line += f", {report.pages_indexed} pages in {report.seconds:.1f} s)" if report.pages_indexed else ")"
    console.print(line, highlight=False)
    for error in report.page_errors:
        console.print(f"[red]page skipped[/red] {error}", highlight=False)
    for old in report.replaced:
        console.print(f"replaced the older version of this file (book {old})", highlight=False)


@index_app.command("add")
def index_add(
    pdfs: Annotated[Optional[list[Path]], typer.Argument(help="PDF files to index.")] = None,
    manifest: Annotated[
        Optional[Path], typer.Option(help="JSON manifest of books (file, title, edition, isbn, license, organ_systems, sha256).")
    ] = None,
    title: Annotated[Optional[str], typer.Option(help="Book title (one PDF only).")] = None,
    edition: Annotated[str, typer.Option(help="Edition, e.g. '10th'.")] = "",
    license: Annotated[str, typer.Option(help="Licence of the book.")] = "",
    organ: Annotated[Optional[list[str]], typer.Option(help="Organ-system tag (repeatable).")] = None,
) -> None:
    """Index PDFs. Adding the same file again does nothing; an interrupted run resumes."""
    from indexer.jobs import BookMeta, index_pdf
    from rag.page_index import PageIndex

    with _user_errors():
        pdfs = list(pdfs or [])
        if title and len(pdfs) > 1:
            raise CliError("--title applies to one PDF; index the files one by one to title each")
        jobs = [(pdf, BookMeta(title or "", edition, license, list(organ or []))) for pdf in pdfs]
        if manifest is not None:
            from pathorag.manifest import ManifestError, load_manifest

            try:
                jobs += [(book.path, BookMeta(book.title, book.edition_with_isbn, book.license, book.organ_systems))
                         for book in load_manifest(manifest)]
            except ManifestError as error:
                raise CliError(str(error)) from None
        if not jobs:
            raise CliError("give PDF files or --manifest FILE")
        index = PageIndex(_settings())
        failed = False
        try:
            with _progress() as progress:
                for pdf, meta in jobs:
                    report = index_pdf(index, pdf, meta, _page_progress(progress, pdf.name))
                    progress.console.print()  # keep the finished bar, report below it
                    _print_report(report)
                    failed |= not report.ok
        finally:
            index.close()
    if failed:
        raise typer.Exit(1)


@index_app.command("list")
def index_list(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """List indexed books."""
    from rag.page_index import PageIndex

    with _user_errors():
        index = PageIndex(_settings())
        try:
            books = index.store.list_books()
            counts = {book.book_id: index.store.count_pages(book.book_id) for book in books}
        finally:
            index.close()
    if as_json:
        out.print_json(json.dumps([book.model_dump() | {"pages_indexed": counts[book.book_id]} for book in books]))
        return
    table = Table("book id", "title", "pages", "status", "file")
    for book in books:
        status = book.status + (f" ({len(book.failed_pages)} pages failed)" if book.failed_pages else "")
        table.add_row(book.book_id, book.title, f"{counts[book.book_id]}/{book.page_count}", status, book.source_name)
    out.print(table)


def _resolve_book(index, ref: str) -> str:
    """A book id, a unique id prefix, or the file name it was indexed from."""
    books = index.store.list_books()
    matches = [b for b in books if b.book_id == ref] or [
        b for b in books if b.book_id.startswith(ref) or b.source_name == ref
    ]
    if len(matches) != 1:
        reason = "no book matches" if not matches else "several books match"
        raise CliError(f"{reason} {ref!r}; see `pathorag index list`")
    return matches[0].book_id


@index_app.command("remove")
def index_remove(book: Annotated[str, typer.Argument(help="Book id, id prefix or file name.")]) -> None:
    """Remove a book and its pages."""
    from indexer.jobs import remove_book
    from rag.page_index import PageIndex

    with _user_errors():
        index = PageIndex(_settings())
        try:
            book_id = _resolve_book(index, book)
            remove_book(index, book_id)
        finally:
            index.close()
    console.print(f"removed book {book_id}")


@index_app.command("reindex")
def index_reindex(
    book: Annotated[Optional[str], typer.Argument(help="Only this book (id, prefix or file name).")] = None,
) -> None:
    """Rebuild the index with the configured encoders (all books, or one)."""
    from indexer.jobs import reindex
    from rag.page_index import PageIndex

    settings = _settings()
    with _user_errors():
        book_id = None
        if book:
            index = PageIndex(settings)
            try:
                book_id = _resolve_book(index, book)
            finally:
                index.close()
        with _progress() as progress:
            reports = reindex(settings, book_id, lambda title: _page_progress(progress, title))
    for report in reports:
        _print_report(report)
    if not all(report.ok for report in reports):
        raise typer.Exit(1)


@app.command("search")
def search(
    text: Annotated[str, typer.Argument(help="Text query (may be empty with --image).")] = "",
    image: Annotated[Optional[Path], typer.Option(help="Query image (e.g. a histology picture).")] = None,
    book: Annotated[Optional[list[str]], typer.Option(help="Only this book (repeatable).")] = None,
    organ: Annotated[Optional[list[str]], typer.Option(help="Only this organ system (repeatable).")] = None,
    top_k: Annotated[Optional[int], typer.Option("--top-k", min=1, max=200, help="Pages to return.")] = None,
    channel: Annotated[Optional[list[str]], typer.Option(help="Use only this channel (repeatable): bm25, text, page, image.")] = None,
    all_pages: Annotated[bool, typer.Option("--all-pages", help="Search front matter, contents and index pages too (left out by default).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Search indexed pages by text, by image, or both."""
    from rag.page_index import PageIndex
    from rag.search import SearchQuery, search_pages

    with _user_errors():
        index = PageIndex(_settings())
        try:
            query = SearchQuery(
                text=text,
                image=_load_image(image) if image else None,
                books=[_resolve_book(index, ref) for ref in book or []],
                organ_systems=list(organ or []),
                top_k=top_k,
                channels=tuple(channel) if channel else None,
                all_pages=all_pages,
            )
            hits = search_pages(index, query)
        finally:
            index.close()
    if as_json:
        out.print_json(json.dumps([hit.model_dump() for hit in hits]))
        return
    if not hits:
        out.print("No pages found (is anything indexed? see `pathorag index list`).")
        return
    for rank, hit in enumerate(hits, start=1):
        section = " > ".join(hit.section_path)
        out.print(f"[bold]{rank}. {hit.title}[/bold], page {hit.page_label or hit.page} (pdf page {hit.page})  score {hit.score:.3f}", highlight=False)
        if section:
            out.print(f"   {section}", highlight=False)
        out.print(f"   {hit.snippet}", highlight=False)


@app.command("ask", context_settings={"allow_extra_args": True})
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
    from agent import Agent, AgentConfigError, AgentInputError
    from rag.page_index import PageIndex

    with _user_errors():
        if ctx.args and not choices:
            raise CliError(f"unexpected argument(s) {ctx.args}; quote the question, and give options after --choices")
        # `--choices "A text" "B text"`: the options after the first arrive as extra arguments.
        choices = [*(choices or []), *ctx.args]
        settings = _settings()
        index = PageIndex(settings)
        try:
            books = [_resolve_book(index, ref) for ref in book or []]
            agent = Agent(settings, index)
            try:
                result = agent.run(
                    question, list(image or []), choices, thread, books, list(organ or [])
                )
            finally:
                agent.close()
        except (AgentInputError, AgentConfigError) as error:
            raise CliError(str(error)) from None
        finally:
            index.close()
    if as_json:
        out.print_json(result.model_dump_json())
        return
    _print_result(result)


def _print_result(result) -> None:
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
        if citation.snippet:
            out.print(f"      {citation.snippet}", highlight=False)
    out.print("[bold]trace[/bold]")
    for event in result.trace:
        out.print(f"  {_describe_event(event)}", highlight=False)
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/yellow] {warning}", highlight=False)


def _describe_event(event) -> str:
    if event.type == "route":
        searched = f"search {len(event.queries)} queries" if event.retrieval else "no search"
        organs = f" in {', '.join(event.organ_systems)}" if event.organ_systems else ""
        return f"route ({event.by}): {searched}{organs}"
    if event.type == "search":
        found = ", ".join(hit.ref for hit in event.hits) or event.error or "nothing"
        return f"search (round {event.turn}): {event.query!r} -> {found}"
    if event.type == "inspect":
        return f"inspect (round {event.turn}): {', '.join(event.pages) or '-'}; sufficient: {event.sufficient}"
    if event.type == "reflect":
        return f"reflect: {event.stop_reason or 'search again: ' + '; '.join(event.next_queries)}"
    if event.type == "citation_removed":
        return f"citation removed: {event.citation} ({event.reason})"
    return f"answer ({event.by})" + (f": {event.choice}" if event.choice else "")

def _load_image(path: Path):
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()
            return image.convert("RGB")
    except FileNotFoundError:
        raise CliError(f"{path}: no such file") from None
    except (UnidentifiedImageError, OSError) as error:
        raise CliError(f"{path}: not a readable image ({error})") from None


from pathorag.evaluation import register as _register_eval  # noqa: E402  (`eval`, `eval-convert`)

_register_eval(app)

from pathorag.demo import register as _register_demo  # noqa: E402  (`demo`)

_register_demo(app)


@app.command("serve")
def serve(
    host: Annotated[Optional[str], typer.Option(help="Address to listen on (default: PATHORAG_SERVER_HOST).")] = None,
    port: Annotated[Optional[int], typer.Option(help="Port (default: PATHORAG_SERVER_PORT).")] = None,
) -> None:
    """Run the HTTP API (REST, OpenAI-compatible chat, books admin) with uvicorn."""
    import uvicorn

    from server.app import create_app
    from server.auth import AuthConfigError

    settings = _settings()
    logging.getLogger().setLevel(logging.INFO)
    try:
        app_ = create_app(settings)
    except AuthConfigError as error:
        console.print(f"[red]error:[/red] {error}", highlight=False)
        raise typer.Exit(2) from None
    uvicorn.run(app_, host=host or settings.server_host, port=port or settings.server_port, timeout_graceful_shutdown=30)


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
