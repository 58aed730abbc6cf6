"""Evidence-only MCQ accuracy of the agent (no VLM): the best-supported option against the answer key.

usage: python benchmarks/evidence_mcq.py QUESTIONS.jsonl PDF [--page-map MAP] [--data-dir DIR]
Indexes PDF into DIR (skipped when already indexed). With --page-map, items written for another PDF
of the same book are re-targeted through `orig_page` (as BASELINE.md does for the haystack).
Also reports, for two-page items, how often both supporting pages were among the retrieved pages.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

import rag  # noqa: F401
from agent import Agent
from indexer.jobs import index_pdf
from rag.page_index import PageIndex
from rag.settings import Settings


def load_items(path: Path, pdf: Path, page_map: Path | None) -> list[dict]:
    items = [json.loads(line) for line in path.open()]
    items = [q for q in items if q["type"] == "text_mcq"]
    if page_map is None:
        return [q for q in items if q["book"] == pdf.name]
    to_pdf_page = {entry["orig_page"]: entry["pdf_page"] for entry in json.loads(page_map.read_text())}
    out = []
    for q in items:
        orig = q.get("support_orig_pages") or [q["support_orig_page"]]
        if all(p in to_pdf_page for p in orig) and q["book"].split("_dev")[0] == pdf.name.split("_dev")[0]:
            out.append(q | {"support_pdf_pages": [to_pdf_page[p] for p in orig]})
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("questions", type=Path)
    parser.add_argument("pdf", type=Path)
    parser.add_argument("--page-map", type=Path)
    parser.add_argument("--data-dir", type=Path, default=Path(".cache/bench-data"))
    args = parser.parse_args()

    settings = Settings(data_dir=args.data_dir, vlm_base_url=None)
    index = PageIndex(settings)
    report = index_pdf(index, args.pdf)
    agent = Agent(settings, index)
    items = load_items(args.questions, args.pdf, args.page_map)
    correct: dict[str, list[bool]] = defaultdict(list)
    both_found = []
    started = time.monotonic()
    for item in items:
        result = agent.run(item["question"], choices=item["options"], books=[report.book_id])
        style = item.get("style", "all")
        hit = result.choice == item["answer_letter"]
        correct[style].append(hit)
        if style != "all":
            correct["all"].append(hit)
        if len(item.get("support_pdf_pages", [])) > 1:
            retrieved = {h.page for e in result.trace if e.type == "search" for h in e.hits}
            both_found.append(all(p in retrieved for p in item["support_pdf_pages"]))
    for style, hits in sorted(correct.items()):
        print(f"{style:18s} n={len(hits):3d}  accuracy {sum(hits) / len(hits):.2f}")
    if both_found:
        print(f"two-page items with both pages retrieved: {sum(both_found)}/{len(both_found)}")
    print(f"{(time.monotonic() - started) / len(items):.2f} s per question")
    agent.close()


if __name__ == "__main__":
    main()
