"""`pathorag search`: pages by text, by image, or both."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from pathorag.cli.common import load_image, load_settings, out, resolve_book, user_errors


def search(
    text: Annotated[str, typer.Argument(help="Text query (may be empty with --image).")] = "",
    image: Annotated[Optional[Path], typer.Option(help="Query image (e.g. a histology picture).")] = None,
    book: Annotated[Optional[list[str]], typer.Option(help="Only this book (repeatable).")] = None,
    organ: Annotated[Optional[list[str]], typer.Option(help="Only this organ system (repeatable).")] = None,
    top_k: Annotated[Optional[int], typer.Option("--top-k", min=1, max=200, help="Pages to return.")] = None,
    channel: Annotated[Optional[list[str]], typer.Option(help="Use only this channel (repeatable): bm25, text, page, image, figure.")] = None,
    all_pages: Annotated[bool, typer.Option("--all-pages", help="Search front matter, contents and index pages too (left out by default).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Search indexed pages by text, by image, or both."""
    from rag.page_index import PageIndex
    from rag.search import SearchQuery, search_pages
    from rag.settings import RagSettings

    with user_errors():
        index = PageIndex(load_settings(RagSettings))
        try:
            query = SearchQuery(
                text=text,
                image=load_image(image) if image else None,
                books=[resolve_book(index, ref) for ref in book or []],
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
