"""Running an evaluation: the index of the question files' books, each item retrieved or answered, the
plain baselines beside, and folds and sweeps when asked."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from pathorag import folds
from pathorag.evaluation.items import EvalError, Item, load_items, load_page_map
from pathorag.evaluation.metrics import KS, ranks_of
from pathorag.evaluation.report import build_report, fold_report

LETTERS = "ABCDEFGHIJ"


@dataclass
class EvalOptions:
    mode: str = "retrieval"  # retrieval | answer
    channels: tuple[str, ...] | None = None
    top_k: int = 10
    book_dir: Path | None = None
    page_map: Path | None = None
    folds: str | None = None  # book | chapter: also report per fold, baselines beside (pathorag/folds.py)
    sweep: tuple[str, ...] = ()  # NAME=V1,V2: with folds, each value chosen on the other folds


# Settings that change what is stored: one index cannot be evaluated under several of their values.
INDEX_TIME_SETTINGS = {
    "data_dir", "qdrant_url", "qdrant_api_key", "collection_prefix", "page_encoder", "text_encoder",
    "device", "dtype", "page_batch_size", "text_batch_size", "token_pooling_factor", "render_dpi",
    "max_page_pixels", "ocr", "ocr_language", "ocr_min_chars", "chunk_words", "chunk_overlap",
}


def _book_path(name: str, question_file: Path, book_dir: Path | None) -> Path:
    for folder in ([book_dir] if book_dir else []) + [question_file.parent]:
        candidate = Path(folder) / name
        if candidate.is_file():
            return candidate
    raise EvalError(f"book {name!r} (named by {question_file.name}) not found in {book_dir or question_file.parent}")


def run_eval(
    settings,
    question_files: Sequence[Path],
    options: EvalOptions,
    progress: Callable[[str, int, int], None] | None = None,
    index=None,
) -> dict:
    """Index the named books, run every item, and return the report (a JSON-ready dict)."""
    from indexer.jobs import index_pdf
    from rag.page_index import PageIndex

    if options.mode not in ("retrieval", "answer"):
        raise EvalError(f"unknown mode {options.mode!r}; choose retrieval or answer")
    if options.folds is not None and options.folds not in folds.FOLD_KINDS:
        raise EvalError(f"unknown folds {options.folds!r}; choose {' or '.join(folds.FOLD_KINDS)}")
    if options.sweep and not options.folds:
        raise EvalError("--sweep needs --folds: a value chosen and reported on the same questions says nothing")
    try:
        updates = folds.parse_sweep(options.sweep, type(settings).model_fields, INDEX_TIME_SETTINGS) if options.sweep else []
        swept = {folds.sweep_label(update): settings.model_validate(settings.model_dump() | update) for update in updates}
    except (folds.FoldError, ValueError) as error:
        raise EvalError(str(error)) from None
    page_map = load_page_map(options.page_map) if options.page_map else None
    items: list[Item] = []
    notes: list[str] = []
    book_files: dict[str, Path] = {}
    for path in question_files:
        loaded, file_notes = load_items(Path(path), page_map)
        notes += file_notes
        for item in loaded:
            if item.book and item.book not in book_files:
                book_files[item.book] = _book_path(item.book, Path(path), options.book_dir)
        items += loaded
    if not items:
        raise EvalError("the question files hold no items")

    own_index = index is None
    index = index or PageIndex(settings)
    try:
        book_ids: dict[str, str] = {}
        indexing = {}
        for name, pdf in book_files.items():
            report = index_pdf(index, pdf, progress=(lambda done, total, n=name: progress(f"index {n}", done, total)) if progress else None)
            if report.status == "failed":
                raise EvalError(f"indexing {pdf} failed: {report.error}")
            book_ids[name] = report.book_id
            indexing[name] = {"book_id": report.book_id, "status": report.status, "seconds": round(report.seconds, 1)}
        visual = index.encoders.page is not None
        records = _run_items(index, items, book_ids, options, progress)
        report = build_report(records, options, settings, indexing, notes, visual)
        if options.folds:
            runs = {"defaults": records}
            for label, swept_settings in swept.items():
                swept_index = index.with_settings(swept_settings)
                runs[label] = _run_items(swept_index, items, book_ids, options, progress, label)
            baselines = _baseline_runs(index, items, book_ids, options, progress)
            report["folds"] = fold_report(items, _folds_of(index, items, book_ids, options.folds), runs, baselines, options)
    finally:
        if own_index:
            index.close()
    return report


def _run_items(index, items: list[Item], book_ids: dict[str, str], options: EvalOptions, progress=None, label: str = "") -> list[dict]:
    """One record per item, with the index's settings (an agent of those settings in answer mode)."""
    agent = None
    if options.mode == "answer":
        from agent import Agent

        agent = Agent(index.settings, index)
    else:
        _warm_up(index, options)
    visual = index.encoders.page is not None
    title = f"{options.mode} {label}".strip()
    records = []
    try:
        for done, item in enumerate(items):
            if progress:
                progress(f"{title} {item.source_file}", done, len(items))
            books = [book_ids[item.book]] if item.book else []
            if options.mode == "retrieval":
                records.append(_retrieve(index, item, books, options, visual))
            else:
                records.append(_answer(agent, item, books))
        if progress:
            progress(f"{title} done", len(items), len(items))
    finally:
        if agent is not None:
            agent.close()
    return records


def _warm_up(index, options: EvalOptions) -> None:
    """One untimed search, so model loading does not count as search latency."""
    from rag.search import SearchError, SearchQuery, search_pages

    try:
        search_pages(index, SearchQuery(text="warm up", channels=options.channels))
    except SearchError:
        pass


def _record_of(item: Item) -> dict:
    """The fields every per-item record of a report starts with."""
    return {"id": item.id, "kind": item.kind, "group": item.group, "type": item.type, "file": item.source_file, "book": item.book, "support": item.support}


def _retrieve(index, item: Item, books: list[str], options: EvalOptions, visual: bool) -> dict:
    from rag.search import SearchError, SearchQuery, search_pages

    record = _record_of(item)
    if item.kind == "external":
        return record | {"evaluable": False, "reason": "no support pages (external item)"}
    image = None
    if item.image is not None:
        if not visual:
            return record | {"evaluable": False, "reason": "image query without a visual channel (PATHORAG_PAGE_ENCODER=none)"}
        from PIL import Image

        with Image.open(item.image) as opened:
            image = opened.convert("RGB")
    query = SearchQuery(text=item.question, image=image, books=books, top_k=max(options.top_k, max(KS)), channels=options.channels)
    started = time.perf_counter()
    try:
        hits = search_pages(index, query)
    except SearchError as error:
        return record | {"evaluable": False, "reason": f"search error: {error}"}
    record["search_ms"] = round((time.perf_counter() - started) * 1000, 2)
    ranked = [(hit.book_id, hit.page) for hit in hits]
    record["top_score"] = hits[0].score if hits else None
    record["top_channel_scores"] = {
        name: max((hit.channel_scores[name] for hit in hits if name in hit.channel_scores), default=None)
        for name in sorted({n for hit in hits for n in hit.channel_scores})
    }
    record["retrieved"] = [f"{b[:8]}:{p}" for b, p in ranked]
    if item.kind == "in_corpus":
        record["ranks"] = ranks_of(ranked, [(books[0], page) for page in item.support])
    return record | {"evaluable": True}


def _answer(agent, item: Item, books: list[str]) -> dict:
    from agent import AgentInputError

    record = _record_of(item)
    if not item.options or not item.answer_letter:
        return record | {"evaluable": False, "reason": "no options or answer letter (open question)"}
    try:
        result = agent.run(item.question, images=[item.image] if item.image else (), choices=item.options, books=books)
    except (AgentInputError, OSError) as error:
        return record | {"evaluable": False, "reason": f"agent refused the item: {error}"}
    retrieved = {(h.book_id, h.page) for e in result.trace if e.type == "search" for h in e.hits}
    record |= {
        "evaluable": True,
        "choice": result.choice,
        "correct": result.choice == item.answer_letter,
        "insufficient_evidence": result.insufficient_evidence,
        "evidence_only": result.evidence_only,
        "agent_ms": result.latency_ms,
        "top_score": max((c.score for c in result.citations), default=None),
        "warnings": result.warnings,
    }
    if item.kind == "in_corpus" and books:
        record["support_retrieved"] = all((books[0], p) in retrieved for p in item.support)
    return record


def _baseline_runs(index, items: list[Item], book_ids: dict[str, str], options: EvalOptions, progress=None) -> dict[str, list[dict]]:
    """Plain methods measured on the same items, beside every fold table.

    Retrieval: each text channel alone. Answer: the option whose "question + option" BM25 query finds
    the best-scoring page, and the option with the largest share of its words on the question's top 5 pages.
    """
    if options.mode == "retrieval":
        return {
            f"{channel} alone": _run_items(index, items, book_ids, replace(options, channels=(channel,)), progress, f"{channel} alone")
            for channel in ("bm25", "text")
        }
    _warm_up(index, options)
    runs: dict[str, list[dict]] = {}
    for name, pick in (("BM25 question+option", _bm25_question_option), ("option words in top 5 pages", _option_words_on_top_pages)):
        records = []
        for done, item in enumerate(items):
            if progress:
                progress(f"baseline {name}", done, len(items))
            record = _record_of(item)
            if not item.options or not item.answer_letter:
                records.append(record | {"evaluable": False, "reason": "no options or answer letter (open question)"})
                continue
            books = [book_ids[item.book]] if item.book else []
            supports = pick(index, item, books)
            choice = LETTERS[max(range(len(supports)), key=lambda k: (supports[k], -k))]
            records.append(record | {"evaluable": True, "choice": choice, "correct": choice == item.answer_letter, "insufficient_evidence": False})
        runs[name] = records
    return runs


def _bm25_question_option(index, item: Item, books: list[str]) -> list[float]:
    from rag.search import SearchQuery, search_pages

    scores = []
    for option in item.options:
        hits = search_pages(index, SearchQuery(text=f"{item.question} {option}", books=books, top_k=1, channels=("bm25",)))
        scores.append(hits[0].channel_scores.get("bm25", 0.0) if hits else 0.0)
    return scores


def _option_words_on_top_pages(index, item: Item, books: list[str]) -> list[float]:
    from agent.evidence import content_terms
    from rag.search import SearchQuery, search_pages

    hits = search_pages(index, SearchQuery(text=item.question, books=books, top_k=5))
    on_pages = content_terms(" ".join(hit.text for hit in hits))
    shares = []
    for option in item.options:
        words = content_terms(option)
        shares.append(len(words & on_pages) / len(words) if words else 0.0)
    return shares


def _folds_of(index, items: list[Item], book_ids: dict[str, str], by: str) -> list[str]:
    """Each item's fold: its book, or its book and the top-level section of its first support page."""
    if by == "book":
        return [item.book or "" for item in items]
    names = []
    for item in items:
        record = index.page(book_ids[item.book], item.support[0]) if item.kind == "in_corpus" else None
        section = record.section_path[0] if record is not None and record.section_path else "(no section)"
        names.append(f"{item.book} / {section}")
    return names
