"""Question files in: the items of a JSON-lines file, and page maps that re-target them to another PDF."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path


class EvalError(ValueError):
    """A question file or book that cannot be evaluated (the message says why)."""


@dataclass
class Item:
    id: str
    kind: str  # in_corpus | out_of_corpus | external
    type: str
    style: str
    question: str
    options: list[str]
    answer_letter: str | None
    book: str | None
    support: list[int]
    image: Path | None
    source_file: str
    raw: dict = field(repr=False, default_factory=dict)

    @property
    def group(self) -> str:
        return self.style or self.type


def _options(value) -> list[str]:
    if not value:
        return []
    if isinstance(value, dict):
        return [str(value[key]) for key in sorted(value)]
    return [str(option) for option in value]


def _family(pdf_name: str) -> str:
    """Books of one title share the part of the file name before `_dev` (e.g. the dev PDF and the haystack)."""
    return pdf_name.removesuffix(".pdf").split("_dev")[0]


def load_page_map(path: Path) -> tuple[str, dict[int, int]]:
    """(PDF file name the map belongs to, orig_page -> pdf_page) from a `NAME.page_map.json`."""
    try:
        entries = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise EvalError(f"{path}: cannot read the page map ({error})") from None
    pdf_name = path.name.removesuffix(".json").removesuffix(".page_map") + ".pdf"
    return pdf_name, {int(e["orig_page"]): int(e["pdf_page"]) for e in entries}


def load_items(path: Path, page_map: tuple[str, dict[int, int]] | None = None) -> tuple[list[Item], list[str]]:
    """The items of one question file, and notes on what was skipped or re-targeted."""
    notes: list[str] = []
    items: list[Item] = []
    try:
        lines = path.read_text().splitlines()
    except OSError as error:
        raise EvalError(f"{path}: cannot read ({error.strerror or error})") from None
    retargeted = dropped = 0
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as error:
            raise EvalError(f"{path}:{number}: not JSON ({error})") from None
        if not isinstance(raw, dict) or not raw.get("question"):
            raise EvalError(f"{path}:{number}: an item needs a `question`")
        support = raw.get("support_pdf_pages") or ([raw["support_pdf_page"]] if raw.get("support_pdf_page") else [])
        book = raw.get("book") or None
        if page_map is not None and book and _family(book) == _family(page_map[0]) and book != page_map[0]:
            orig = raw.get("support_orig_pages") or ([raw["support_orig_page"]] if raw.get("support_orig_page") else [])
            if not orig or not all(int(p) in page_map[1] for p in orig):
                dropped += 1
                continue
            book, support = page_map[0], [page_map[1][int(p)] for p in orig]
            retargeted += 1
        kind = raw.get("kind") or ("in_corpus" if book and support else "out_of_corpus" if not book and not support else "external")
        image = raw.get("image")
        items.append(
            Item(
                id=str(raw.get("id") or f"{path.stem}-{number}"),
                kind=kind,
                type=raw.get("type") or ("figure_vqa" if image else "text_mcq"),
                style=raw.get("style") or "",
                question=str(raw["question"]),
                options=_options(raw.get("options")),
                answer_letter=raw.get("answer_letter") or None,
                book=book,
                support=[int(p) for p in support],
                image=(path.parent / image) if image else None,
                source_file=path.name,
                raw=raw,
            )
        )
    if retargeted or dropped:
        notes.append(f"{path.name}: {retargeted} items re-targeted to {page_map[0]} through orig_page; {dropped} without a mapped page skipped")
    return items, notes
