"""Plain data types shared by the indexer, the store and search."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field


# What a page is: the book's body, or its front matter (title, copyright, prefaces: the pages before
# the contents), contents or index. Contents and index name every topic they list, so they rank for
# many questions while stating nothing; search leaves all three out unless asked (indexer.page_kinds).
BODY_PAGE = "body"
OUTSIDE_BODY_PAGES = ("front", "contents", "index")


class EncoderInfo(BaseModel):
    """What built a vector channel; recorded in the index so a mismatch can be refused."""

    name: str
    revision: str = ""
    dim: int
    pooling: str = ""
    runtime: Literal["in process", "served"] = "in process"
    input_format: str = Field("", description="How inputs are formatted for the model (processor, prompts).")


BookStatus = Literal["indexing", "complete", "removing"]  # only `complete` books are searchable


class BookRecord(BaseModel):
    """One indexed textbook. `book_id` derives from the file's content."""

    book_id: str
    title: str
    edition: str = ""
    license: str = ""
    source_name: str = Field("", description="File name the book was indexed from.")
    organ_systems: list[str] = Field(default_factory=list)
    page_count: int = 0
    status: BookStatus = "indexing"
    failed_pages: list[int] = Field(default_factory=list, description="Pages that could not be read.")
    added_at: str = ""

    @property
    def complete(self) -> bool:
        """Indexing finished: the book is searchable (an `indexing` or `removing` one never is)."""
        return self.status == "complete"


Box = tuple[float, float, float, float]  # left, top, right, bottom as fractions of the page image


class FigureRecord(BaseModel):
    """A figure of a page: what its caption says, where it lies on the page image, its crop."""

    number: str = Field("", description="The figure's number as printed ('25', 'XXXIV'); empty without a caption.")
    caption: str = ""
    box: Box = Field(description="Where it lies on the page image: left, top, right, bottom as fractions.")
    image_key: str = Field("", description="Key of its crop in the page-image store.")


class PageRecord(BaseModel):
    """The payload of one page point: everything a citation needs, no vectors."""

    book_id: str
    title: str = ""
    page: int = Field(description="1-based page number in the PDF.")
    page_label: str = Field("", description="Printed page label, e.g. 'xii' or '213'.")
    section_path: list[str] = Field(default_factory=list)
    text: str = ""
    captions: list[str] = Field(default_factory=list)
    organ_systems: list[str] = Field(default_factory=list)
    content_hash: str = ""
    image_key: str = Field("", description="Key of the rendered page image in the page-image store.")
    words_key: str = Field("", description="Key of the page's word boxes in the page-words store.")
    figures: list[FigureRecord] = Field(default_factory=list, description="The page's figures, top to bottom.")
    ocr: bool = False
    page_kind: str = Field(
        BODY_PAGE, description="body, or front, contents or index: pages search leaves out unless asked."
    )


@dataclass(frozen=True)
class SparseVector:
    indices: list[int]
    values: list[float]


class FigurePointRecord(BaseModel):
    """The payload of a figure point: whose figure it is, and the page fields a search filters on."""

    book_id: str
    page: int
    figure: int = Field(description="The figure's place among its page's figures, 1-based, top to bottom.")
    page_point_id: str = Field(description="The point id of its page.")
    organ_systems: list[str] = Field(default_factory=list)
    page_kind: str = BODY_PAGE


@dataclass
class FigurePoint:
    """A figure crop ready to upsert: its payload and its visual vectors (the page channel's names)."""

    point_id: str
    record: FigurePointRecord
    dense: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (d,)
    multi: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (n, d)


@dataclass
class PagePoint:
    """A page ready to upsert: its payload, the vectors of each channel present, and the points of its
    figure crops (written before the page, so a stored page always has its figures)."""

    point_id: str
    record: PageRecord
    dense: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (d,)
    multi: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (n, d)
    sparse: dict[str, SparseVector] = field(default_factory=dict)
    figures: list[FigurePoint] = field(default_factory=list)


class CitedPage(BaseModel):
    """A page as every result names it, from a search hit to an answer's citation over HTTP."""

    book_id: str
    title: str = ""
    page: int = Field(description="1-based page number in the PDF.")
    page_label: str = Field("", description="Printed page label, e.g. 'xii' or '213'.")
    section: str = Field("", description="The page's section path, outermost first, joined by ' > '.")
    score: float = 0.0
    snippet: str = ""
    image_key: str = Field("", description="Key of the rendered page image in the page-image store.")
    words_key: str = Field("", description="Key of the page's word boxes in the page-words store.")
    figures: list[FigureRecord] = Field(default_factory=list, description="The page's figures, top to bottom.")
    matched_figure: int = Field(
        0, description="Of the page's figures (1-based, in `figures`), the one whose crop matched the query image "
        "best; 0 when none was among the image's matches, or no image was searched."
    )


class PageHit(CitedPage):
    """One page found by a search: a cited page with how each channel ranked it."""

    section_path: list[str] = Field(default_factory=list)
    channel_scores: dict[str, float] = Field(default_factory=dict)
    channel_ranks: dict[str, int] = Field(default_factory=dict)
    page_kind: str = BODY_PAGE
    text: str = Field("", exclude=True, repr=False)
