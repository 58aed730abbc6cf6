"""Page-retrieval recall of `search_pages` on a question file (schema: ../shared/corpora/README.md).

usage: python benchmarks/retrieval_recall.py QUESTIONS.jsonl PDF [--data-dir DIR] [--channels bm25 text]
Indexes PDF into DIR (skipped when already indexed), asks every text question (question text only,
as in BASELINE.md) and prints Recall@1/5/10, MRR and, for multi-page items, how often all support
pages are in the top 10, overall and per question style.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

import rag  # noqa: F401
from indexer.jobs import index_pdf
from rag.page_index import PageIndex
from rag.search import SearchQuery, search_pages
from rag.settings import Settings


def support_pages(item: dict) -> list[int]:
    return item.get("support_pdf_pages") or [item["support_pdf_page"]]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("questions", type=Path)
    parser.add_argument("pdf", type=Path)
    parser.add_argument("--data-dir", type=Path, default=Path(".cache/bench-data"))
    parser.add_argument("--channels", nargs="*", default=None)
    parser.add_argument("--top-k", type=int, default=10)
    args = parser.parse_args()

    settings = Settings(data_dir=args.data_dir)
    index = PageIndex(settings)
    started = time.monotonic()
    report = index_pdf(index, args.pdf)
    print(f"index: {report.status} {report.pages_indexed} pages in {time.monotonic() - started:.1f} s")
    book_id = report.book_id

    items = [json.loads(line) for line in args.questions.open()]
    items = [q for q in items if q["type"] == "text_mcq" and q["book"] == args.pdf.name]
    groups: dict[str, list[tuple[list[int], list[int]]]] = defaultdict(list)
    latencies = []
    for item in items:
        t0 = time.monotonic()
        hits = search_pages(
            index,
            SearchQuery(text=item["question"], books=[book_id], top_k=args.top_k,
                        channels=tuple(args.channels) if args.channels else None),
        )
        latencies.append(time.monotonic() - t0)
        ranked = [hit.page for hit in hits]
        ranks = [ranked.index(p) + 1 if p in ranked else 10**6 for p in support_pages(item)]
        groups[item.get("style", "all")].append(ranks)
        groups["all"].append(ranks) if "style" in item else None
    for name, rows in sorted(groups.items()):
        n = len(rows)
        line = f"{name:18s} n={n:3d}"
        for k in (1, 5, 10):
            line += f"  R@{k} {sum(min(r) <= k for r in rows) / n:.2f}"
        line += f"  MRR {sum(1 / min(r) for r in rows) / n:.3f}"
        multi = [r for r in rows if len(r) > 1]
        if multi:
            line += f"  all pages@10 {sum(max(r) <= 10 for r in multi)}/{len(multi)}"
        print(line)
    latencies.sort()
    print(f"search latency p50 {latencies[len(latencies) // 2] * 1000:.0f} ms, p95 {latencies[int(len(latencies) * 0.95)] * 1000:.0f} ms")
    index.close()


if __name__ == "__main__":
    main()
