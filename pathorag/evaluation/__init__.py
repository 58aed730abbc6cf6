"""`pathorag eval`: page-retrieval and answer benchmarks over question files (schema: README, "Evaluation").

An item is one JSON line. Its kind decides what is measured:
- in corpus: it names a `book` and its supporting page(s) (`support_pdf_page` or `support_pdf_pages`):
  retrieval metrics against those pages, within that book;
- out of corpus (no `book`, no support field, e.g. `out_of_corpus_mcq.jsonl`): a control, searched over
  every indexed book; its top scores against the in-corpus ones give the score calibration (AUROC),
  and in answer mode the share the agent marked `insufficient_evidence` gives the abstention;
- external (`"kind": "external"`, as the converters write for PathVQA / PathMMU): answer accuracy only.

`items` reads question files, `runner` runs them, `metrics` holds the pure metric functions and
`report` turns records into the report and its tables.
"""

from pathorag.evaluation.items import EvalError, Item, load_items, load_page_map
from pathorag.evaluation.metrics import (
    auroc,
    found_at,
    latency_summary,
    ndcg_at_k,
    percentile,
    ranks_of,
    reciprocal_rank,
    retrieval_summary,
)
from pathorag.evaluation.report import build_report, fold_report, fold_table, report_lines, report_table
from pathorag.evaluation.runner import INDEX_TIME_SETTINGS, EvalOptions, run_eval

__all__ = [
    "INDEX_TIME_SETTINGS",
    "EvalError",
    "EvalOptions",
    "Item",
    "auroc",
    "build_report",
    "fold_report",
    "fold_table",
    "found_at",
    "latency_summary",
    "load_items",
    "load_page_map",
    "ndcg_at_k",
    "percentile",
    "ranks_of",
    "reciprocal_rank",
    "report_lines",
    "report_table",
    "retrieval_summary",
    "run_eval",
]
