"""How much of a text's vocabulary the library knows: the words that no searchable page uses.

A question whose words the books never use is one they are unlikely to answer, however close its
nearest page looks to a sentence encoder: this is a signal from the index's own term statistics,
with nothing learned from questions. Words compare as the BM25 channel sees them (its tokenizer,
stemmer and stopwords), and a word counts as known where a page uses another name or spelling of
it (rag.terminology).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from rag.encoders import BM25
from rag.models import SparseVector
from rag.page_index import PageIndex
from rag.store import ChannelQuery, PageFilter
from rag.terminology import find_alternatives

_WORD = re.compile(r"[^\W_]+")
# Words that point at the book, not the topic ("according to the textbook, ..."): not part of what is asked.
FRAMING_WORDS = frozenset("according textbook textbooks book books text texts author authors chapter chapters page pages".split())


@dataclass(frozen=True)
class Coverage:
    words: int  # distinct content words of the text (as BM25 terms)
    unknown: list[str] = field(default_factory=list)  # those no searchable page uses, as the text writes them

    @property
    def share(self) -> float:
        """The share of the words some page uses (1.0 for a text without content words)."""
        return 1.0 - len(self.unknown) / self.words if self.words else 1.0


def terms_occur(index: PageIndex, words: str, page_filter: PageFilter) -> bool:
    """Whether every BM25 term of `words` occurs on some page the filter admits."""
    return all(_occurs(index, term, page_filter) for term in index.encoders.sparse.embed_query(words).indices)


def _occurs(index: PageIndex, term: int, page_filter: PageFilter) -> bool:
    return bool(index.store.search(ChannelQuery(BM25, SparseVector([term], [1.0]), 1), page_filter))


def vocabulary_coverage(index: PageIndex, text: str) -> Coverage:
    """Which words of `text` occur on no page of the library's searchable books (any kind of page)."""
    books = index.complete_books()
    if not books:
        return Coverage(0)
    library = PageFilter(book_ids=sorted(book.book_id for book in books))
    sparse = index.encoders.sparse
    named_otherwise = set()  # terms of names whose other name or spelling the library uses
    for alternatives in find_alternatives(text):
        if any(terms_occur(index, other, library) for other in alternatives.others):
            named_otherwise.update(sparse.embed_query(alternatives.found).indices)
    checked: set[tuple[int, ...]] = set()
    unknown = []
    for word in dict.fromkeys(w for w in _WORD.findall(text.lower()) if w not in FRAMING_WORDS):
        terms = tuple(sparse.embed_query(word).indices)
        if not terms or terms in checked:  # a stopword, or another form of a word already checked
            continue
        checked.add(terms)
        if not all(term in named_otherwise or _occurs(index, term, library) for term in terms):
            unknown.append(word)
    return Coverage(len(checked), unknown)
