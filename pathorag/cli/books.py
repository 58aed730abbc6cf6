"""`pathorag index ...`: add, list, remove and rebuild indexed textbooks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from pathorag.cli.common import (
    CliError,
    console,
    load_settings,
    out,
    page_progress,
    print_report,
    progress_bars,
    resolve_book,
    user_errors,
)

index_app = typer.Typer(help="Add, list, remove and rebuild indexed textbooks.", no_args_is_help=True)


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
    from indexer.settings import IndexerSettings
    from rag.page_index import PageIndex

    with user_errors():
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
        index = PageIndex(load_settings(IndexerSettings))
        failed = False
        try:
            with progress_bars() as progress:
                for pdf, meta in jobs:
                    report = index_pdf(index, pdf, meta, page_progress(progress, pdf.name))
                    progress.console.print()  # keep the finished bar, report below it
                    print_report(report)
                    failed |= not report.ok
        finally:
            index.close()
    if failed:
        raise typer.Exit(1)


@index_app.command("list")
def index_list(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """List indexed books."""
    from rag.page_index import PageIndex
    from rag.settings import RagSettings

    with user_errors():
        index = PageIndex(load_settings(RagSettings))
        try:
            books = index.books()
            counts = {book.book_id: index.count_pages(book.book_id) for book in books}
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


@index_app.command("remove")
def index_remove(book: Annotated[str, typer.Argument(help="Book id, id prefix or file name.")]) -> None:
    """Remove a book and its pages."""
    from rag.page_index import PageIndex
    from rag.settings import RagSettings

    with user_errors():
        index = PageIndex(load_settings(RagSettings))
        try:
            book_id = resolve_book(index, book)
            index.remove_book(book_id)
        finally:
            index.close()
    console.print(f"removed book {book_id}")


@index_app.command("reindex")
def index_reindex(
    book: Annotated[Optional[str], typer.Argument(help="Only this book (id, prefix or file name).")] = None,
) -> None:
    """Rebuild the index with the configured encoders (all books, or one)."""
    from indexer.jobs import reindex
    from indexer.settings import IndexerSettings
    from rag.page_index import PageIndex

    settings = load_settings(IndexerSettings)
    with user_errors():
        book_id = None
        if book:
            index = PageIndex(settings)
            try:
                book_id = resolve_book(index, book)
            finally:
                index.close()
        with progress_bars() as progress:
            reports = reindex(settings, book_id, lambda title: page_progress(progress, title))
    for report in reports:
        print_report(report)
    if not all(report.ok for report in reports):
        raise typer.Exit(1)
