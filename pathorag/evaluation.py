"""`pathorag eval`: page-retrieval and answer benchmarks over question files (schema: README, "Evaluation").

An item is one JSON line. Its kind decides what is measured:
- in corpus: it names a `book` and its supporting page(s) (`support_pdf_page` or `support_pdf_pages`):
  retrieval metrics against those pages, within that book;
- out of corpus (no `book`, no support field, e.g. `out_of_corpus_mcq.jsonl`): a control, searched over
  every indexed book; its top scores against the in-corpus ones give the score calibration (AUROC),
  and in answer mode the share the agent marked `insufficient_evidence` gives the abstention;
- external (`"kind": "external"`, as the converters write for PathVQA / PathMMU): answer accuracy only.

Metric functions take ranks (1-based, `None` = not retrieved) and are pure, so tests check them by hand.
"""

from __future__ import annotations

import json
import math
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from pathorag import folds

KS = (1, 5, 10)
NDCG_K = 5
LETTERS = "ABCDEFGHIJ"


# --- metrics -----------------------------------------------------------------------------------------


def ranks_of(ranked_pages: Sequence, support: Iterable) -> list[int | None]:
    """1-based rank of each support page in the ranking, None where it is absent."""
    position = {}
    for rank, page in enumerate(ranked_pages, start=1):
        position.setdefault(page, rank)
    return [position.get(page) for page in support]


def found_at(ranks: Sequence[int | None], k: int, all_pages: bool = True) -> bool:
    """All support pages (or, with all_pages=False, any of them) are in the top k."""
    inside = [r is not None and r <= k for r in ranks]
    return all(inside) if all_pages else any(inside)


def reciprocal_rank(ranks: Sequence[int | None]) -> float:
    """1 / rank of the first support page found (0 when none is)."""
    found = [r for r in ranks if r is not None]
    return 1.0 / min(found) if found else 0.0


def ndcg_at_k(ranks: Sequence[int | None], k: int = NDCG_K) -> float:
    """Binary-relevance nDCG@k: every support page is relevant with gain 1."""
    dcg = sum(1.0 / math.log2(r + 1) for r in ranks if r is not None and r <= k)
    ideal = sum(1.0 / math.log2(i + 1) for i in range(1, min(len(ranks), k) + 1))
    return dcg / ideal if ideal else 0.0


def auroc(positives: Sequence[float], negatives: Sequence[float]) -> float | None:
    """P(score of a positive > score of a negative), ties counted half (Mann-Whitney U / (n_pos n_neg))."""
    if not positives or not negatives:
        return None
    wins = 0.0
    for p in positives:
        for n in negatives:
            wins += 1.0 if p > n else 0.5 if p == n else 0.0
    return wins / (len(positives) * len(negatives))


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile (q in 0..100), as numpy's default."""
    if not values:
        return None
    data = sorted(values)
    pos = (len(data) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    if lo == hi:
        return data[lo]
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def retrieval_summary(rows: Sequence[Sequence[int | None]]) -> dict:
    """Recall@k (all support pages, and any support page), MRR and nDCG@5 over items' rank lists."""
    n = len(rows)
    if not n:
        return {"n": 0}
    out: dict = {"n": n}
    for k in KS:
        out[f"recall_all@{k}"] = round(sum(found_at(r, k, True) for r in rows) / n, 4)
    for k in KS:
        out[f"recall_any@{k}"] = round(sum(found_at(r, k, False) for r in rows) / n, 4)
    out["mrr"] = round(sum(reciprocal_rank(r) for r in rows) / n, 4)
    out[f"ndcg@{NDCG_K}"] = round(sum(ndcg_at_k(r, NDCG_K) for r in rows) / n, 4)
    out["multi_page"] = sum(len(r) > 1 for r in rows)
    return out


def latency_summary(values_ms: Sequence[float]) -> dict:
    if not values_ms:
        return {"n": 0}
    return {"n": len(values_ms), "p50_ms": round(percentile(values_ms, 50), 1), "p95_ms": round(percentile(values_ms, 95), 1)}


# --- items ---------------------------------------------------------------------------------------------


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


# --- running -------------------------------------------------------------------------------------------


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
                swept_index = PageIndex(swept_settings, store=index.store, encoders=index.encoders)
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
    from rag.page_index import page_point_id

    if by == "book":
        return [item.book or "" for item in items]
    wanted = {item.id: page_point_id(book_ids[item.book], item.support[0]) for item in items if item.kind == "in_corpus"}
    records = index.store.get_pages(sorted(set(wanted.values())))
    names = []
    for item in items:
        record = records.get(wanted.get(item.id, ""))
        section = record.section_path[0] if record is not None and record.section_path else "(no section)"
        names.append(f"{item.book} / {section}")
    return names


def fold_report(items: list[Item], fold_names: list[str], runs: dict[str, list[dict]], baselines: dict[str, list[dict]], options: EvalOptions) -> dict:
    """Per book: the baselines, the defaults and, with a sweep, each swept value, the value best on all
    folds ("tuned") and the value chosen on the other folds ("held out")."""
    retrieval = options.mode == "retrieval"
    every = [*runs.values(), *baselines.values()]
    usable = [i for i, item in enumerate(items) if item.kind == "in_corpus" and all(run[i]["evaluable"] for run in every)]
    names = [fold_names[i] for i in usable]

    def only_usable(run: list[dict]) -> list[dict]:
        return [run[i] for i in usable]

    columns = {name: only_usable(run) for name, run in baselines.items()} | {"defaults": only_usable(runs["defaults"])}
    out: dict = {"by": options.folds, "objective": "MRR" if retrieval else "accuracy", "n_folds": len(set(names)), "swept": list(runs)[1:]}
    if len(runs) > 1:
        candidates = {label: only_usable(run) for label, run in runs.items()}
        columns |= {label: records for label, records in candidates.items() if label != "defaults"}
        objective = (lambda r: reciprocal_rank(r["ranks"])) if retrieval else (lambda r: float(r["correct"]))
        held_out, tuned = folds.cross_validate(candidates, names, objective)
        columns["tuned"] = folds.pick(candidates, tuned)
        columns["held out"] = folds.pick(candidates, held_out)
        out["tuned_choice"] = tuned[0] if tuned else None
        out["held_out_choice"] = dict(zip(names, held_out))
    rows = []
    for book in [*sorted({items[i].book for i in usable}), "all"]:
        for name, records in columns.items():
            kept = [r for r in records if book == "all" or r["book"] == book]
            rows.append({"book": book, "run": name} | _fold_metrics(kept, retrieval))
    out["rows"] = rows
    return out


def _fold_metrics(records: list[dict], retrieval: bool) -> dict:
    n = len(records)
    if not n:
        return {"n": 0}
    if not retrieval:
        return {
            "n": n,
            "accuracy": round(sum(r["correct"] for r in records) / n, 4),
            "insufficient_evidence": round(sum(r["insufficient_evidence"] for r in records) / n, 4),
        }
    ranks = [r["ranks"] for r in records]
    multi = [r for r in ranks if len(r) > 1]
    out = {"n": n}
    for k in KS:
        out[f"R@{k}"] = round(sum(found_at(r, k, False) for r in ranks) / n, 4)
    out["MRR"] = round(sum(reciprocal_rank(r) for r in ranks) / n, 4)
    out["both pages@10"] = round(sum(found_at(r, 10, True) for r in multi) / len(multi), 4) if multi else None
    return out


def build_report(records: list[dict], options: EvalOptions, settings, indexing: dict, notes: list[str], visual: bool) -> dict:
    groups: dict[str, list[dict]] = defaultdict(list)
    several_books = len({r["book"] for r in records if r["kind"] == "in_corpus"}) > 1
    for record in records:
        if record["kind"] == "in_corpus":
            groups[record["group"]].append(record)
            groups["all in-corpus"].append(record)
            if several_books:
                groups[f"book: {record['book']}"].append(record)
        elif record["kind"] == "out_of_corpus":
            groups["out-of-corpus"].append(record)
        else:
            groups[f"external: {record['group']}"].append(record)
    not_evaluable: dict[str, int] = defaultdict(int)
    for record in records:
        if not record["evaluable"]:
            not_evaluable[record["reason"]] += 1
    report: dict = {
        "mode": options.mode,
        "settings": {
            "channels": list(options.channels) if options.channels else "all available",
            "top_k": max(options.top_k, max(KS)),
            "fusion": settings.fusion,
            "page_encoder": settings.page_encoder,
            "visual_channel": visual,
            "vlm": bool(settings.vlm_base_url),
        },
        "books": indexing,
        "notes": notes,
        "n_items": len(records),
        "not_evaluable": dict(not_evaluable),
        "groups": {},
        "calibration": {},
        "latency": {},
    }
    order = {"all in-corpus": 0, "out-of-corpus": 2}
    for name, rows in sorted(groups.items(), key=lambda kv: (order.get(kv[0], 1) + 2 * kv[0].startswith("external"), kv[0])):
        usable = [r for r in rows if r["evaluable"]]
        entry = {"n": len(rows), "n_evaluable": len(usable)}
        if options.mode == "retrieval" and name != "out-of-corpus" and not name.startswith("external"):
            entry |= {k: v for k, v in retrieval_summary([r["ranks"] for r in usable]).items() if k != "n"}
        if options.mode == "answer" and usable:
            entry["accuracy"] = round(sum(r["correct"] for r in usable) / len(usable), 4)
            entry["insufficient_evidence"] = round(sum(r["insufficient_evidence"] for r in usable) / len(usable), 4)
            both = [r["support_retrieved"] for r in usable if "support_retrieved" in r and len(r["support"]) > 1]
            if both:
                entry["multi_page_all_support_retrieved"] = round(sum(both) / len(both), 4)
        report["groups"][name] = entry
    # A query that retrieved nothing (or nothing from a channel) scores lowest: it is the clearest "not here".
    inside = [r for r in records if r["kind"] == "in_corpus" and r["evaluable"] and "top_score" in r]
    outside = [r for r in records if r["kind"] == "out_of_corpus" and r["evaluable"] and "top_score" in r]
    calibration: dict = {"n_in_corpus": len(inside), "n_out_of_corpus": len(outside)}
    if inside and outside:
        calibration["score"] = "top fused search score" if options.mode == "retrieval" else "best cited page score of the agent"
        calibration["auroc_top_score"] = _round(auroc([_score(r.get("top_score")) for r in inside], [_score(r.get("top_score")) for r in outside]))
        for name in sorted({n for r in inside + outside for n in r.get("top_channel_scores", {})}):
            pos = [_score(r["top_channel_scores"].get(name)) for r in inside]
            neg = [_score(r["top_channel_scores"].get(name)) for r in outside]
            calibration[f"auroc_top_{name}_score"] = _round(auroc(pos, neg))
            calibration[f"threshold_in_corpus_p05_{name}"] = _round(percentile(pos, 5))
        # Abstention a score threshold would give: reject below the 5th percentile of in-corpus top scores.
        threshold = percentile([_score(r.get("top_score")) for r in inside], 5)
        calibration["threshold_in_corpus_p05"] = _round(threshold)
        calibration["out_of_corpus_below_threshold"] = _round(sum(_score(r.get("top_score")) < threshold for r in outside) / len(outside))
    if options.mode == "answer":
        ooc = [r for r in records if r["kind"] == "out_of_corpus" and r["evaluable"]]
        if ooc:
            calibration["out_of_corpus_insufficient_evidence"] = _round(sum(r["insufficient_evidence"] for r in ooc) / len(ooc))
    report["calibration"] = calibration
    stage = "search_ms" if options.mode == "retrieval" else "agent_ms"
    report["latency"][stage.removesuffix("_ms")] = latency_summary([r[stage] for r in records if stage in r])
    report["items"] = records
    return report


def _round(value: float | None) -> float | None:
    return None if value is None or math.isinf(value) else round(value, 4)


def _score(value: float | None) -> float:
    return float("-inf") if value is None else value


# --- table ---------------------------------------------------------------------------------------------


def report_table(report: dict):
    from rich.table import Table

    retrieval = report["mode"] == "retrieval"
    if retrieval:
        columns = ["group", "n", "R@1 all", "R@5 all", "R@10 all", "R@1 any", "R@5 any", "R@10 any", "MRR", "nDCG@5"]
        keys = ["recall_all@1", "recall_all@5", "recall_all@10", "recall_any@1", "recall_any@5", "recall_any@10", "mrr", "ndcg@5"]
    else:
        columns = ["group", "n", "accuracy", "insufficient evidence", "multi-page: all support retrieved"]
        keys = ["accuracy", "insufficient_evidence", "multi_page_all_support_retrieved"]
    table = Table(*columns, title=f"pathorag eval ({report['mode']})")
    for name, entry in report["groups"].items():
        n = f"{entry['n_evaluable']}" + (f"/{entry['n']}" if entry["n_evaluable"] != entry["n"] else "")
        table.add_row(name, n, *[_cell(entry.get(key)) for key in keys])
    return table


def fold_table(fold_report: dict):
    from rich.table import Table

    metrics = [key for key in fold_report["rows"][0] if key not in ("book", "run")] if fold_report["rows"] else []
    title = f"pathorag eval by {fold_report['by']} ({fold_report['n_folds']} folds; choices by {fold_report['objective']})"
    table = Table("book", "run", *metrics, title=title)
    previous = None
    for row in fold_report["rows"]:
        if previous is not None and row["book"] != previous:
            table.add_section()
        previous = row["book"]
        table.add_row(row["book"], row["run"], *[_cell(row.get(key)) for key in metrics])
    return table


def _cell(value) -> str:
    return "" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def report_lines(report: dict) -> list[str]:
    lines = []
    if report["mode"] == "retrieval":
        lines.append("R@k all: every support page in the top k; R@k any: at least one (as BASELINE.md).")
    for reason, count in report["not_evaluable"].items():
        lines.append(f"not evaluable: {count} items ({reason})")
    cal = report["calibration"]
    if "auroc_top_score" in cal:
        extra = ", ".join(f"{k.removeprefix('auroc_top_').removesuffix('_score')} {v:.3f}" for k, v in cal.items() if k.startswith("auroc_top_") and k != "auroc_top_score" and v is not None)
        lines.append(
            f"in- vs out-of-corpus AUROC of the top fused score {cal['auroc_top_score']:.3f}"
            + (f" (per channel: {extra})" if extra else "")
            + f"; out-of-corpus below the in-corpus 5th percentile: {cal['out_of_corpus_below_threshold']:.2f}"
        )
    if cal.get("threshold_in_corpus_p05_text") is not None:
        lines.append(
            f"in-corpus 5th percentile of the top text-channel cosine: {cal['threshold_in_corpus_p05_text']:.3f} "
            "(a value for PATHORAG_AGENT_MIN_TEXT_SIMILARITY)"
        )
    if "out_of_corpus_insufficient_evidence" in cal:
        lines.append(f"out-of-corpus questions marked insufficient_evidence: {cal['out_of_corpus_insufficient_evidence']:.2f}")
    for stage, lat in report["latency"].items():
        if lat.get("n"):
            lines.append(f"latency {stage}: p50 {lat['p50_ms']:.0f} ms, p95 {lat['p95_ms']:.0f} ms (n={lat['n']})")
    fold_report = report.get("folds") or {}
    if fold_report.get("tuned_choice"):
        lines.append(f"tuned: {fold_report['tuned_choice']} (best on all folds); held out: each fold gets the best on the others")
        if fold_report["by"] == "book":
            lines += [f"  held out on {fold}: {label}" for fold, label in fold_report["held_out_choice"].items()]
    lines += report["notes"]
    return lines
