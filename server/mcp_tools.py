"""pathorag as tools for other agents, over the Model Context Protocol (the official MCP Python SDK).

Tools: `search_pages`, `get_page` (text and image), `ask` (the agent's cited answer) and `list_books`;
resources: the book list and each page's text. One `MCPServer` serves either transport: stdio
(`pathorag mcp`, for desktop clients) or streamable HTTP at /mcp on the FastAPI app, behind its API
keys (server/mcp_http.py). Inputs are checked with the HTTP API's limits; a refusal is a tool error
with its reason, and any other fault an opaque tool error: the server never goes down with a call.
"""

# No `from __future__ import annotations`: the SDK reads the tools' signatures, whose types are local.
import io
import re
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Annotated

import anyio
from mcp.server.mcpserver import Image, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ToolError
from mcp_types import ToolAnnotations
from PIL import Image as PILImage
from pydantic import BaseModel, Field

from agent.errors import AgentInputError
from agent.images import jpeg_bytes, load_user_image
from agent.state import AgentResult
from rag.encoders.served import EncoderServiceError
from rag.models import BookRecord, CitedPage
from rag.page_index import NotInIndexError, PageIndex
from rag.search import SearchError, SearchQuery, search_pages
from rag.store import StoreError
from server.errors import ApiError
from server.images import check_image_count, image_bytes
from server.settings import ServerSettings

Answerer = Callable[[dict], Awaitable[AgentResult]]  # `Agent.run`'s keyword arguments -> its result

MAX_TOP_K = 50  # as /v1/ask's top_k
MIN_PAGE_PIXELS, MAX_PAGE_PIXELS = 16_384, 4_194_304
INSTRUCTIONS = (
    "Search indexed pathology textbooks and read their pages. search_pages finds pages by text and/or an "
    "image; get_page returns a page's text and image; ask answers a question with page citations; "
    "list_books names the books. Cite book and page for anything taken from a page. This is decision "
    "support from textbooks, not a diagnosis."
)
_DIGITS = re.compile(r"[0-9]{1,7}")


class BookInfo(BaseModel):
    book_id: str
    title: str
    edition: str = ""
    page_count: int = 0
    organ_systems: list[str] = Field(default_factory=list)
    source_name: str = Field("", description="File name the book was indexed from.")


class PageRef(BaseModel):
    """A page as the tools name it; `get_page` takes its book_id and page."""

    book_id: str
    title: str = ""
    page: int = Field(description="1-based page number in the PDF.")
    page_label: str = Field("", description="The page number printed on the page, e.g. '213' or 'xii'.")
    section: str = ""
    snippet: str = ""
    uri: str = Field(description="The page's text as an MCP resource.")


class SearchHitOut(PageRef):
    score: float


class SearchResults(BaseModel):
    hits: list[SearchHitOut]


class CitationOut(PageRef):
    ref: str = Field(description="How the answer names this page (P1, P2, ...).")
    passage: str = Field("", description="The page's words the answer relies on.")


class AskAnswer(BaseModel):
    answer: str
    choice: str | None = Field(None, description="The chosen option letter (multiple choice).")
    rationale: str = ""
    evidence_only: bool = Field(description="True: no language model wrote this answer (retrieval only).")
    insufficient_evidence: bool = False
    option_support: dict[str, float] = Field(default_factory=dict)
    citations: list[CitationOut] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    thread_id: str | None = None


def page_uri(book_id: str, page: int) -> str:
    return f"pathorag://books/{book_id}/pages/{page}"


def _book_info(book: BookRecord) -> BookInfo:
    return BookInfo(**book.model_dump(include=set(BookInfo.model_fields)))


def _page_ref(page: CitedPage, **extra) -> dict:
    fields = {name: getattr(page, name) for name in ("book_id", "title", "page", "page_label", "section", "snippet")}
    return fields | {"uri": page_uri(fields["book_id"], fields["page"])} | extra


@contextmanager
def _tool_errors() -> Iterator[None]:
    """The refusals a caller can act on, as tool errors with their message (anything else stays opaque)."""
    try:
        yield
    except (AgentInputError, SearchError, NotInIndexError) as error:
        raise ToolError(str(error)) from None
    except ApiError as error:  # the server's own refusals, e.g. too many questions at once
        raise ToolError(error.message) from None
    except (StoreError, EncoderServiceError) as error:
        raise ToolError(f"the index is unavailable right now: {error}") from None
    except TimeoutError:
        raise ToolError("the question took longer than the server's time limit (request_timeout_s)") from None


def build_mcp_server(settings: ServerSettings, index: PageIndex, answer: Answerer) -> MCPServer:
    """The MCP server over `index`; `ask` answers through `answer` (which owns slots and time limits)."""
    server = MCPServer("pathorag", instructions=INSTRUCTIONS, version="0.1.0")
    read_only = ToolAnnotations(read_only_hint=True, open_world_hint=False)
    QuestionText = Annotated[str, Field(max_length=settings.agent_max_question_chars)]
    Refs = Annotated[list[str], Field(max_length=100)]

    def image_of(reference: str, name: str):
        if not reference.startswith(("data:", "http://", "https://")):
            reference = "data:;base64," + reference  # plain base64, as models often write it
        data = image_bytes(reference, settings, name)
        return load_user_image(data, settings.agent_max_image_bytes, settings.agent_max_image_decoded_pixels, name)

    def book_ids(refs: list[str]) -> list[str]:
        return [index.resolve_book(ref).book_id for ref in refs]

    def run_search(query: str, image: str | None, books: list[str], organ_systems: list[str], top_k: int) -> SearchResults:
        if not query.strip() and not image:
            raise SearchError("give a query text, an image, or both")
        search = SearchQuery(
            text=query, image=image_of(image, "image") if image else None, books=book_ids(books),
            organ_systems=organ_systems, top_k=top_k,
        )  # fmt: skip
        hits = search_pages(index, search)
        return SearchResults(hits=[SearchHitOut(**_page_ref(hit, score=round(hit.score, 4))) for hit in hits])

    @server.tool(name="search_pages", annotations=read_only)
    async def search_pages_tool(
        query: Annotated[QuestionText, Field(description="What to find, in words (may be empty with an image).")] = "",
        image: Annotated[str | None, Field(description="A query image (e.g. a histology picture): a base64 data URL or base64.")] = None,
        books: Annotated[Refs, Field(description="Only these books (ids, id prefixes or file names).")] = [],
        organ_systems: Annotated[Refs, Field(description="Only these organ systems.")] = [],
        top_k: Annotated[int, Field(ge=1, le=MAX_TOP_K, description="Pages to return.")] = 10,
    ) -> SearchResults:
        """Find textbook pages by text and/or image: book, printed page label, section and snippet per hit."""
        with _tool_errors():
            return await anyio.to_thread.run_sync(partial(run_search, query, image, books, organ_systems, top_k))

    def read_page(book: str, page: int, max_pixels: int) -> list:
        book_id = index.resolve_book(book).book_id
        record = index.page(book_id, page)
        if record is None:
            raise NotInIndexError(f"no page {page} in book {book_id}")
        label = f"page {record.page_label} (PDF page {page})" if record.page_label else f"PDF page {page}"
        header = [f"{record.title}, {label}"] + ([" > ".join(record.section_path)] if record.section_path else [])
        text = "\n".join(header) + "\n\n" + (record.text or "(no text on this page)")
        with PILImage.open(io.BytesIO(index.page_image(book_id, page))) as stored:
            return [text, Image(data=jpeg_bytes(stored, max_pixels), format="jpeg")]

    @server.tool(annotations=read_only, structured_output=False)
    async def get_page(
        book_id: Annotated[str, Field(description="The book (its id, an id prefix or its file name).")],
        page: Annotated[int, Field(ge=1, le=1_000_000, description="1-based page number in the PDF.")],
        max_pixels: Annotated[
            int, Field(ge=MIN_PAGE_PIXELS, le=MAX_PAGE_PIXELS, description="The image is scaled down to at most this many pixels.")
        ] = settings.agent_image_pixels,
    ) -> list:
        """A page's text (with its title, printed page label and section) and its image (JPEG)."""
        with _tool_errors():
            return await anyio.to_thread.run_sync(partial(read_page, book_id, page, max_pixels))

    @server.tool()
    async def ask(
        question: Annotated[QuestionText, Field(description="The pathology question.", min_length=1)],
        choices: Annotated[list[str], Field(max_length=26, description="Multiple-choice options, in order (A, B, ...).")] = [],
        images: Annotated[list[str], Field(description="Images (e.g. histology) as base64 data URLs or base64.")] = [],
        books: Annotated[Refs, Field(description="Only these books (ids, id prefixes or file names).")] = [],
        organ_systems: Annotated[Refs, Field(description="Only these organ systems.")] = [],
        thread_id: Annotated[str | None, Field(max_length=200, description="Conversation thread, for follow-up questions.")] = None,
    ) -> AskAnswer:
        """Answer a pathology question from the textbooks with page citations (evidence only when no model is set)."""
        with _tool_errors():
            check_image_count(len(images), settings)
            decoded = [await anyio.to_thread.run_sync(image_of, ref, f"image {n}") for n, ref in enumerate(images, 1)]
            run_args = dict(
                question=question, images=decoded, choices=choices, books=book_ids(books),
                organ_systems=organ_systems, thread_id=thread_id,
            )  # fmt: skip
            result = await answer(run_args)
        return AskAnswer(
            **result.model_dump(include=set(AskAnswer.model_fields) - {"citations"}),
            citations=[CitationOut(**_page_ref(c, ref=c.ref, passage=c.passage)) for c in result.citations],
        )

    @server.tool(annotations=read_only)
    async def list_books() -> list[BookInfo]:
        """The searchable books: id, title, edition, page count, organ systems."""
        with _tool_errors():
            return [_book_info(book) for book in await anyio.to_thread.run_sync(index.complete_books)]

    @server.resource("pathorag://books", mime_type="application/json", description="The searchable books.")
    async def books_resource() -> str:
        books = await anyio.to_thread.run_sync(index.complete_books)
        return "[" + ",".join(_book_info(book).model_dump_json() for book in books) + "]"

    @server.resource(
        "pathorag://books/{book_id}/pages/{page}", mime_type="text/plain", description="The text of one page."
    )
    async def page_resource(book_id: str, page: str) -> str:
        if not _DIGITS.fullmatch(page):
            raise ResourceError("the page must be a number")
        record = await anyio.to_thread.run_sync(index.page, book_id, int(page))
        if record is None:
            raise ResourceError(f"no page {page} in book {book_id}")
        return record.text

    return server
