"""Support for each multiple-choice option from the retrieved page text alone (evidence-only mode).

An option is supported where the pages state it close to what the question asks about: for each
place a page uses one of the option's distinctive words, the support there is the share of the
option's words (IDF-weighted) found within a few words around it, times how much of the question is
found there too. The question's last sentence (where the actual ask usually is) counts more than
its setting, and pages retrieval ranked higher count a little more.

Refinements that each held up on a development set of paraphrased, vignette and two-part questions:
- Words every option shares ("after about ...") carry no information and are left out.
- A compound option ("X; Y", typical of two-part questions) is supported part by part, so its
  parts' supports multiply; when the question has as many clauses ("which ..., and in ..., which
  ..."), each part is read in the context of its own clause.
- Words compare by their Snowball stem; numbers written as words match digits ("twenty-four" =
  "24"); American and British spellings are one word; a name in the terminology lexicon (e.g.
  "neutrophil") is found where the page uses another name of the same thing.
No model is involved: this is a lexical reading aid, and the answer says so.

`pick_option` turns the supports into a choice: the best-supported option, or, for a question that
asks for the exception ("all of the following except", "which is false"), the least-supported one;
and whether the pages settle it (no other option close to the chosen one).
"""

from __future__ import annotations

import math
import re
import threading
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import snowballstemmer

from rag.terminology import SPELLING_VARIANTS, SYNONYM_GROUPS

WINDOW_WORDS = 15  # words on each side of an option word that count as "close"
QUESTION_PRIOR = 0.2  # support for an option stated where none of the question's words are
FOCUS_WEIGHT = 1.5  # weight of the question's last sentence's words against the rest
CLAUSE_WEIGHT = 3.0  # weight of a compound option part's own question clause
RANK_DECAY = 0.05  # the page at retrieval rank r counts 1 / (1 + RANK_DECAY * r)

_ONES = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen".split()
_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90}
_STOP = frozenset(
    "a an the of and or to in on at by for with from as is are was were be been it its this that these "
    "those which what when how who whom whose do does did not no into than then there their they he she "
    "his her them such may can will would should could about according book text textbook authors "
    "author say says said describe described".split()
)
_SPELLING = [(re.compile(pattern), british) for pattern, british in SPELLING_VARIANTS]
_STEMMERS = threading.local()  # a Snowball stemmer keeps its word in itself: one per thread
_CLAUSE_SPLIT = re.compile(r",?\s+and\s+(?=(?:in|what|which|how|when|where|who|why|whose)\b)", re.IGNORECASE)
_SENTENCE_END = re.compile(r"(?<=[.?!])\s+")
_ASKS_FOR_EXCEPTION = re.compile(
    r"\bexcept\b|\b(?:is|are)\s+(?:not\s+(?:true|correct)|false|incorrect|untrue)\b", re.IGNORECASE
)  # not "least likely": books state that positively ("less liable to be infected than ...")
CLOSE_SUPPORT = 0.9  # another option with at least this share of the chosen one's support: not settled


def _number_words() -> dict[str, str]:
    words = {word: str(value) for value, word in enumerate(_ONES)}
    for tens, value in _TENS.items():
        words[tens] = str(value)
        for unit in range(1, 10):
            words[f"{tens}-{_ONES[unit]}"] = str(value + unit)
    return words


_NUMBERS = _number_words()
_NUMBER_WORD = re.compile(r"\b(" + "|".join(sorted(_NUMBERS, key=len, reverse=True)) + r")\b")


@lru_cache(maxsize=65536)
def _term(word: str) -> str:
    if word.isdigit():
        return word
    for pattern, british in _SPELLING:
        word = pattern.sub(british, word)
    stemmer = getattr(_STEMMERS, "english", None)
    if stemmer is None:
        stemmer = _STEMMERS.english = snowballstemmer.stemmer("english")
    return stemmer.stemWord(word)


def terms(text: str) -> list[str]:
    """Lower-case, accent-free word stems in order, number words as digits, one spelling per word."""
    text = text.lower().replace("æ", "ae").replace("œ", "oe")
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    text = _NUMBER_WORD.sub(lambda m: _NUMBERS[m.group(1)], text)
    return [_term(word) for word in re.findall(r"[a-z0-9]+", text)]


def content_terms(text: str) -> set[str]:
    """The distinct stems of `text` without function words."""
    return {term for term in terms(text) if term not in _STOP}


@dataclass(frozen=True)
class Concept:
    """One thing an option says: its own words (`key`), and every wording that counts as stating it."""

    key: frozenset[str]
    wordings: tuple[frozenset[str], ...]


@lru_cache(maxsize=1)
def _synonym_names() -> list[list[tuple[str, ...]]]:
    return [[tuple(terms(name)) for name in group] for group in SYNONYM_GROUPS]


def concepts(text: str) -> list[Concept]:
    """The content of `text`: lexicon names (with their other names as wordings), then single words."""
    words = terms(text)
    used = [False] * len(words)
    found: dict[frozenset[str], Concept] = {}
    for names in _synonym_names():
        for name in names:
            for i in range(len(words) - len(name) + 1):
                if tuple(words[i : i + len(name)]) == name and not any(used[i : i + len(name)]):
                    used[i : i + len(name)] = [True] * len(name)
                    key = frozenset(name) - _STOP
                    wordings = tuple(w for w in (frozenset(other) - _STOP for other in names) if w)
                    if key:
                        found.setdefault(key, Concept(key, wordings))
    for word, in_name in zip(words, used):
        if not in_name and word not in _STOP:
            key = frozenset([word])
            found.setdefault(key, Concept(key, (key,)))
    return list(found.values())


def score_options(question: str, options: Sequence[str], page_texts: Sequence[str]) -> list[float]:
    """Support per option in 0..1, summing to 1 (equal shares when the pages support none).

    `page_texts` are best first (retrieval order)."""
    if not options:
        return []
    pages = [terms(text) for text in page_texts]
    idf = _idf(pages)
    asked = _asked(question)
    parts = [[concepts(part) for part in option.split(";")] for option in options]
    n_parts = min(len(p) for p in parts)
    clauses = _CLAUSE_SPLIT.split(question) if n_parts > 1 else []
    logs = []
    for k in range(len(options)):
        log_support = 0.0
        for j in range(n_parts):
            others = [{c.key for c in parts[m][j]} for m in range(len(options)) if m != k]
            shared = {c.key for c in parts[k][j]}.intersection(*others) if others else set()
            distinctive = [c for c in parts[k][j] if c.key not in shared] or parts[k][j]
            context = asked
            if len(clauses) == n_parts:
                own = set(terms(clauses[j]))
                context = {t: w * (CLAUSE_WEIGHT if t in own else 1.0) for t, w in asked.items()}
            log_support += math.log(_best_place(distinctive, context, pages, idf) + 1e-3)
        logs.append(log_support)
    top = max(logs)
    weights = [math.exp(value - top) for value in logs]
    return [w / sum(weights) for w in weights]


def _asked(question: str) -> dict[str, float]:
    """The question's content words, weighted: those of its last sentence count FOCUS_WEIGHT."""
    sentences = [s for s in _SENTENCE_END.split(question.strip()) if s]
    focus = set(terms(sentences[-1])) if sentences else set()
    return {t: FOCUS_WEIGHT if t in focus else 1.0 for t in terms(question) if t not in _STOP}


def _idf(pages: list[list[str]]) -> dict[str, float]:
    counts: dict[str, int] = {}
    for page in pages:
        for term in set(page):
            counts[term] = counts.get(term, 0) + 1
    n = len(pages)
    return {term: math.log(1 + (n + 1) / (count + 0.5)) for term, count in counts.items()}


def _best_place(option: list[Concept], asked: dict[str, float], pages: list[list[str]], idf: dict[str, float]) -> float:
    unseen = math.log(2 + len(pages))  # a word on no retrieved page is as rare as can be

    def weight(term: str) -> float:
        return idf.get(term, unseen)

    concept_weights = [sum(weight(t) for t in concept.key) for concept in option]
    option_mass = sum(concept_weights) or 1.0
    asked_mass = sum(weight(t) * w for t, w in asked.items()) or 1.0
    anchors = set().union(*(wording for concept in option for wording in concept.wordings))
    best = 0.0
    for rank, page in enumerate(pages):
        page_weight = 1.0 / (1.0 + RANK_DECAY * rank)
        for i, term in enumerate(page):
            if term not in anchors:
                continue
            near = set(page[max(0, i - WINDOW_WORDS) : i + WINDOW_WORDS])
            stated = sum(w for concept, w in zip(option, concept_weights) if any(x <= near for x in concept.wordings))
            context = sum(weight(t) * w for t, w in asked.items() if t in near) / asked_mass
            best = max(best, page_weight * stated / option_mass * (QUESTION_PRIOR + context))
    return best


@dataclass(frozen=True)
class OptionPick:
    index: int  # the chosen option
    exception: bool  # the question asks for the option that does not hold
    rivals: list[int]  # other options supported about as much (low confidence when any)


def asks_for_exception(question: str) -> bool:
    """'All of the following ... EXCEPT', 'Which ... is false / not true': the answer is the option the
    pages do not state ('the false membrane' is not such a question)."""
    return bool(_ASKS_FOR_EXCEPTION.search(question))


def pick_option(question: str, supports: Sequence[float]) -> OptionPick:
    """The option to suggest from its support (`score_options`), and the options too close to call."""
    exception = asks_for_exception(question)
    strength = [1.0 - s for s in supports] if exception else list(supports)
    best = max(range(len(strength)), key=strength.__getitem__)
    rivals = [i for i, value in enumerate(strength) if i != best and value >= CLOSE_SUPPORT * strength[best]]
    return OptionPick(best, exception, rivals)
