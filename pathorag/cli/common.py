"""What every `pathorag` command shares: the consoles, user-facing errors, settings, progress bars."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

import rag  # noqa: F401  (torch/torchvision compatibility before any model library is imported)
from rag.settings import RagSettings

if TYPE_CHECKING:
    from agent.settings import AgentSettings

SettingsT = TypeVar("SettingsT", bound=RagSettings)

console = Console(stderr=True)  # messages, progress, errors
out = Console()  # results


class CliError(Exception):
    """An error whose message is all the user needs."""


@contextmanager
def user_errors() -> Iterator[None]:
    """Errors the user can act on end the command with their message and exit code 2."""
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


def load_settings(kind: type[SettingsT]) -> SettingsT:
    """The settings of the package a command runs (`IndexerSettings` for indexing, ...), from the
    environment and `.env`."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return kind()


def progress_bars() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


def page_progress(progress: Progress, description: str):
    task = progress.add_task(description, total=None, rate="")

    def update(done: int, total: int) -> None:
        progress.update(task, completed=done, total=total)
        speed = progress.tasks[task].speed
        progress.update(task, rate=f"{speed:.2f} pages/s" if speed else "")

    return update


def print_report(report) -> None:
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


def resolve_book(index, ref: str) -> str:
    """The id of the book `ref` names: a book id, a unique id prefix, or the file name it was indexed from."""
    from rag.page_index import NotInIndexError

    try:
        return index.resolve_book(ref).book_id
    except NotInIndexError as error:
        raise CliError(f"{error}; see `pathorag index list`") from None


def load_image(path: Path):
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()
            return image.convert("RGB")
    except FileNotFoundError:
        raise CliError(f"{path}: no such file") from None
    except (UnidentifiedImageError, OSError) as error:
        raise CliError(f"{path}: not a readable image ({error})") from None


@contextmanager
def answering_agent(settings: AgentSettings, index) -> Iterator:
    """The agent over `index`, closed afterwards; its input and configuration errors become CliErrors."""
    from agent import Agent, AgentConfigError, AgentInputError

    agent = None
    try:
        agent = Agent(settings, index)
        yield agent
    except (AgentInputError, AgentConfigError) as error:
        raise CliError(str(error)) from None
    finally:
        if agent is not None:
            agent.close()


def evidence_lines(citation, max_chars: int = 240) -> list[str]:
    """What a citation shows a reader under its page: the passage relied on, quoted, and the page's figures."""
    lines = []
    if citation.passage:
        passage = " ".join(citation.passage.split())
        lines.append(f"“{passage if len(passage) <= max_chars else passage[:max_chars].rsplit(' ', 1)[0] + ' ...'}”")
    for n, figure in enumerate(citation.figures, start=1):
        matched = " (its figure closest to your image)" if n == citation.matched_figure else ""
        lines.append(f"figure{matched}: {figure.caption}" if figure.caption else f"figure{matched} (no caption)")
    return lines
