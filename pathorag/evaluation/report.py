"""An evaluation's records -> its report (metrics per kind of item, per fold) and the tables printed."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import TYPE_CHECKING

from pathorag import folds
from pathorag.evaluation.items import Item
from pathorag.evaluation.metrics import KS, auroc, found_at, latency_summary, percentile, reciprocal_rank, retrieval_summary

if TYPE_CHECKING:
    from pathorag.evaluation.runner import EvalOptions


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
