"""Where each word of a page lies on its image, and where a passage of the page text lies.

The indexer keeps every page's words with their boxes (from the PDF's text layer, or from OCR) in a
side store of content-addressed, gzipped JSON files, named in the page's payload by `words_key`: a
few kilobytes a page that search never reads. A citation's passage is then found among the words and
marked by one box per line it spans, as fractions of the page image (0..1, left, top, right, bottom),
so any rendering of the page, full size or thumbnail, can draw it.
"""

from __future__ import annotations

import difflib
import gzip
import json
import re
from dataclasses import dataclass
from pathlib import Path

from rag.content_files import ContentFiles
from rag.models import Box

_SCALE = 10_000  # boxes are stored as integers in 1/10 000 of the page's sides
_TOKEN = re.compile(r"[^\W_]+")
# A passage is located where its words run in page order with at most this many page words between
# two matched stretches (a word the text mended across a line break, a dropped footnote mark).
_MAX_GAP = 4
_MIN_MATCHED = 0.6  # share of the passage's words that must be found in order; below, no boxes


@dataclass(frozen=True)
class PageWords:
    """A page's words in reading order, each with its box and the number of the line it is on."""

    words: list[str]
    boxes: list[Box]
    lines: list[int]

    def to_bytes(self) -> bytes:
        flat = [round(v * _SCALE) for box in self.boxes for v in box]
        payload = {"words": self.words, "boxes": flat, "lines": self.lines}
        return gzip.compress(json.dumps(payload, separators=(",", ":")).encode(), mtime=0)

    @classmethod
    def from_bytes(cls, data: bytes) -> PageWords:
        payload = json.loads(gzip.decompress(data))
        flat = payload["boxes"]
        boxes = [tuple(v / _SCALE for v in flat[i : i + 4]) for i in range(0, len(flat), 4)]
        return cls(payload["words"], boxes, payload["lines"])


class PageWordStore:
    def __init__(self, root: Path) -> None:
        self._files = ContentFiles(root, ".json.gz", "page words")

    def put(self, words: PageWords) -> str:
        return self._files.put(words.to_bytes())

    def get(self, key: str) -> PageWords:
        """The stored words of `key`; `KeyError` when there are none."""
        return PageWords.from_bytes(self._files.read(key))


def passage_boxes(words: PageWords, passage: str) -> list[Box]:
    """One box per line of the page that the passage runs over, in reading order; [] when the
    passage's words are not found on the page in order (a quote that is not the page's)."""
    tokens, owners = [], []  # the page's tokens, and the (first, last) word each comes from
    index = 0
    while index < len(words.words):
        word, last = words.words[index], index
        if _hyphenated(words, index):  # "inflam-" ending a line, "mation" starting the next: one word
            word, last = word[:-1] + words.words[index + 1], index + 1
        for token in _tokens(word):
            tokens.append(token.group().casefold())
            owners.append((index, last))
        index = last + 1
    found = _locate(tokens, passage)
    return _line_boxes(words, owners[found[0]][0], owners[found[1]][1]) if found else []


def _hyphenated(words: PageWords, index: int) -> bool:
    word = words.words[index]
    following = words.words[index + 1] if index + 1 < len(words.words) else ""
    return (
        len(word) > 2 and word.endswith("-") and word[-2].isalpha() and following[:1].islower()
        and words.lines[index + 1] != words.lines[index]
    )


def find_passage(text: str, quote: str) -> str:
    """The stretch of `text` that `quote` reproduces (its words in order, allowing for mended line
    breaks, hyphens and a few slips), verbatim from `text`; "" when `text` does not hold it."""
    spans = _tokens(text)
    found = _locate([span.group().casefold() for span in spans], quote)
    return text[spans[found[0]].start() : spans[found[1]].end()] if found else ""


def _tokens(text: str) -> list[re.Match]:
    return list(_TOKEN.finditer(text))


def _locate(tokens: list[str], passage: str) -> tuple[int, int] | None:
    """The first and last of `tokens` that the passage's words match, or None when fewer than
    _MIN_MATCHED of them are found in order close together."""
    wanted = [token.group().casefold() for token in _tokens(passage)]
    if not wanted or not tokens:
        return None
    matcher = difflib.SequenceMatcher(None, tokens, wanted, autojunk=False)
    stretch = _best_stretch([block for block in matcher.get_matching_blocks() if block.size])
    if sum(block.size for block in stretch) < _MIN_MATCHED * len(wanted):
        return None
    return stretch[0].a, stretch[-1].a + stretch[-1].size - 1


def _best_stretch(blocks: list[difflib.Match]) -> list[difflib.Match]:
    """The run of matching blocks, close together on the page, that matches most passage words."""
    runs: list[list[difflib.Match]] = []
    for block in blocks:  # in page order (and passage order) already
        if runs and block.a - (runs[-1][-1].a + runs[-1][-1].size) <= _MAX_GAP:
            runs[-1].append(block)
        else:
            runs.append([block])
    return max(runs, key=lambda run: sum(block.size for block in run)) if runs else []


def _line_boxes(words: PageWords, first: int, last: int) -> list[Box]:
    by_line: dict[int, list[float]] = {}
    for index in range(first, last + 1):
        left, top, right, bottom = words.boxes[index]
        box = by_line.setdefault(words.lines[index], [left, top, right, bottom])
        box[:] = [min(box[0], left), min(box[1], top), max(box[2], right), max(box[3], bottom)]
    return [tuple(round(v, 4) for v in box) for box in by_line.values()]
