"""Support for each multiple-choice option from the retrieved page text alone (evidence-only mode).

An option is supported where the pages state it close to what the question asks about: for each
place a page uses the option's distinctive words, the support there is the share of those words
(IDF-weighted) found within a few words around it, times how much of the question is found there
too. Words every option shares ("after about ...") carry no information and are left out. A
compound option ("X; Y", typical of two-part questions) must be supported part by part, so its
parts' supports multiply. Numbers written as words match digits ("twenty-four" = "24"), and
American spellings match British ones. No model is involved: this is a lexical reading aid.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Sequence

from rag.terminology import spelling_alternatives

WINDOW_WORDS = 15  # words on each side of an option word that count as "close"
QUESTION_PRIOR = 0.2  # support for an option stated where none of the question's words are
STEM_CHARS = 6  # crude stemming: words compare on their first characters

_ONES = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen".split()
_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90}
_STOP = frozenset(
    "a an the of and or to in on at by for with from as is are was were be been it its this that these "
    "those which what when how who whom whose do does did not no into than then there their they he she "
    "his her them such may can will would should could about according book text textbook authors "
    "author say says said describe described".split()
)


def _number_words() -> dict[str, str]:
    words = {word: str(value) for value, word in enumerate(_ONES)}
    for tens, value in _TENS.items():
        words[tens] = str(value)
        for unit in range(1, 10):
            words[f"{tens}-{_ONES[unit]}"] = str(value + unit)
    return words


_NUMBERS = _number_words()
_NUMBER_WORD = re.compile(r"\b(" + "|".join(sorted(_NUMBERS, key=len, reverse=True)) + r")\b")


def terms(text: str) -> list[str]:
    """Lower-case, accent-free word stems in order, number words as digits, British spellings added."""
    text = text + " " + " ".join(o for a in spelling_alternatives(text) for o in a.others)
    text = unicodedata.normalize("NFKD", text.lower()).encode("ascii", "ignore").decode()
    text = _NUMBER_WORD.sub(lambda m: _NUMBERS[m.group(1)], text)
    return [w if w.isdigit() else w[:STEM_CHARS] for w in re.findall(r"[a-z0-9]+", text)]


def score_options(question: str, options: Sequence[str], page_texts: Sequence[str]) -> list[float]:
    """Support per option in 0..1, summing to 1 (equal shares when the pages support none)."""
    if not options:
        return []
    pages = [terms(text) for text in page_texts]
    idf = _idf(pages)
    asked = {t for t in terms(question) if t not in _STOP}
    parts = [[{t for t in terms(part) if t not in _STOP} for part in option.split(";")] for option in options]
    n_parts = min(len(p) for p in parts)
    logs = []
    for k in range(len(options)):
        log_support = 0.0
        for j in range(n_parts):
            others = [parts[m][j] for m in range(len(options)) if m != k]
            shared = parts[k][j].intersection(*others) if others else set()
            distinctive = (parts[k][j] - shared) or parts[k][j]
            log_support += math.log(_best_place(distinctive, asked, pages, idf) + 1e-3)
        logs.append(log_support)
    top = max(logs)
    weights = [math.exp(value - top) for value in logs]
    return [w / sum(weights) for w in weights]


def _idf(pages: list[list[str]]) -> dict[str, float]:
    counts: dict[str, int] = {}
    for page in pages:
        for term in set(page):
            counts[term] = counts.get(term, 0) + 1
    n = len(pages)
    return {term: math.log(1 + (n + 1) / (count + 0.5)) for term, count in counts.items()}


def _best_place(option: set[str], asked: set[str], pages: list[list[str]], idf: dict[str, float]) -> float:
    def mass(words: set[str]) -> float:
        return sum(idf.get(t, math.log(2 + len(pages))) for t in words)

    option_mass, asked_mass = mass(option) or 1.0, mass(asked) or 1.0
    best = 0.0
    for page in pages:
        for i, term in enumerate(page):
            if term not in option:
                continue
            near = set(page[max(0, i - WINDOW_WORDS) : i + WINDOW_WORDS])
            covered = mass(option & near) / option_mass
            context = mass(asked & near) / asked_mass
            best = max(best, covered * (QUESTION_PRIOR + context))
    return best
