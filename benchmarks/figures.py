"""Figures as evidence (issue #17): how well the indexer finds figures, and how often an answer's
citations hold the figure a question is about.

  detection   every page of the development PDFs with a page map (`figures`, `figure_captions`):
              the figures found on each page (indexer.pages, as indexing does) against the map's,
              matched by printed number; recall, precision, caption agreement, ms/page; and on the
              bacteriology book (no figure map; not looked at while the detector was written) the
              share of its 171 figure numbers found
  citations   the `figure_vqa` questions: the library indexed with the text channels, each question
              (its text and options; no page encoder here, so not its image) answered evidence-only by
              the agent; how often a citation is the figure's page and carries that figure

    .venv/bin/python benchmarks/figures.py --corpus ../shared/corpora --out figures.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import rag  # noqa: E402,F401  (the project's import order: rag before transformers)
import pymupdf  # noqa: E402

from indexer import pages as pdfpages  # noqa: E402
from indexer.figures import CAPTION_START  # noqa: E402
from indexer.settings import IndexerSettings  # noqa: E402

BOOKS = {  # PDF -> its page map (1-based pdf_page, figures, figure_captions)
    "manual_of_surgery_dev_haystack.pdf": "manual_of_surgery_dev_haystack.page_map.json",
    "diseases_of_cattle_dev.pdf": "diseases_of_cattle_dev.page_map.json",
}
# A book whose page map has no figures, not used while the detector was written: its SOURCE.md counts
# 171 numbered figures and 6 plates. Found numbers 1..171 are counted (each once), and all found.
HELD_OUT = {"fundamentals_of_bacteriology_dev.pdf": 171}


def gold_numbers(entry: dict) -> list[str]:
    """The printed numbers of a page map entry's figures (from their captions, or the plate number)."""
    numbers = [m.group(1).lower() for caption in entry.get("figure_captions") or [] if (m := CAPTION_START.match(caption))]
    if not numbers and entry.get("plate"):
        numbers = [str(entry["plate"]).lower()]
    return numbers


def detection(corpus: Path, settings: IndexerSettings) -> list[dict]:
    rows = []
    for pdf, page_map in BOOKS.items():
        doc = pdfpages.open_pdf(corpus / pdf)
        entries = {e["pdf_page"]: e for e in json.loads((corpus / page_map).read_text())}
        found_total = gold_total = matched = caption_agree = 0
        seconds = []
        misses, extras = [], []
        for extracted in pdfpages.extract_pages(doc, settings):
            started = time.perf_counter()
            page = doc.load_page(extracted.page - 1)
            pdfpages.page_figures(page, Path(doc.name), pdfpages._read_layout(page, Path(doc.name), None, None))
            seconds.append(time.perf_counter() - started)
            entry = entries.get(extracted.page, {})
            gold = gold_numbers(entry)
            found = [f.number.lower() for f in extracted.figures]
            gold_total += len(entry.get("figures") or [])
            found_total += len(found)
            hits = [n for n in gold if n in found]
            matched += len(hits)
            captions = dict(zip(gold, entry.get("figure_captions") or []))
            for figure in extracted.figures:
                gold_caption = captions.get(figure.number.lower(), "")
                if gold_caption and " ".join(gold_caption.split())[:40].lower() in " ".join(figure.caption.split()).lower():
                    caption_agree += 1
            if len(hits) < len(entry.get("figures") or []):
                misses.append(extracted.page)
            if len(found) > len(hits):
                extras.append(extracted.page)
        rows.append({
            "book": pdf, "pages": doc.page_count, "figures": gold_total, "found": found_total, "matched": matched,
            "recall": round(matched / gold_total, 3) if gold_total else None,
            "precision": round(matched / found_total, 3) if found_total else None,
            "caption_agrees": caption_agree,
            "detection_ms_per_page": round(1000 * statistics.mean(seconds), 2),
            "pages_missed": misses[:20], "pages_with_extra": extras[:20],
        })
    return rows


def held_out_detection(corpus: Path, settings: IndexerSettings) -> list[dict]:
    rows = []
    for pdf, numbered in HELD_OUT.items():
        doc = pdfpages.open_pdf(corpus / pdf)
        found = [f for extracted in pdfpages.extract_pages(doc, settings) for f in extracted.figures]
        numbers = {f.number for f in found if f.number.isdigit() and 1 <= int(f.number) <= numbered}
        rows.append({
            "book": pdf, "pages": doc.page_count, "numbered_figures": numbered, "found": len(found),
            "numbers_found": len(numbers), "recall": round(len(numbers) / numbered, 3),
            "captioned": sum(bool(f.caption) for f in found), "uncaptioned": sum(not f.caption for f in found),
        })
    return rows


def citations(corpus: Path, data_dir: Path, questions: Path) -> dict:
    from agent import Agent
    from indexer.jobs import index_pdf
    from pathorag.evaluation.items import load_items
    from rag.page_index import PageIndex
    from server.settings import ServerSettings

    settings = ServerSettings(_env_file=None, data_dir=data_dir, page_encoder="none", vlm_base_url=None)
    index = PageIndex(settings)
    book_ids = {}
    for pdf in ("manual_of_surgery_dev.pdf", "diseases_of_cattle_dev.pdf"):
        report = index_pdf(index, corpus / pdf)
        book_ids[pdf] = report.book_id
    items = [item for item in load_items(questions)[0] if item.type == "figure_vqa"]
    entries = {pdf: {e["pdf_page"]: e for e in json.loads((corpus / pdf.replace(".pdf", ".page_map.json")).read_text())} for pdf in book_ids}
    agent = Agent(settings, index)
    page_cited = figure_cited = 0
    rows = []
    for item in items:
        page = item.support[0]
        gold = gold_numbers(entries[item.book][page])
        result = agent.run(item.question, choices=item.options)
        on_page = [c for c in result.citations if c.book_id == book_ids[item.book] and c.page == page]
        with_figure = [c for c in on_page if any(f.number.lower() in gold for f in c.figures)]
        page_cited += bool(on_page)
        figure_cited += bool(with_figure)
        rows.append({"id": item.id, "page_cited": bool(on_page), "figure_cited": bool(with_figure), "gold": gold})
    agent.close()
    index.close()
    n = len(items)
    return {"questions": n, "page_cited": round(page_cited / n, 3), "figure_cited": round(figure_cited / n, 3), "items": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=ROOT.parent / "shared" / "corpora")
    parser.add_argument("--skip-citations", action="store_true", help="detection only (no index built)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    settings = IndexerSettings(_env_file=None, page_encoder="none", render_dpi=72)
    report = {
        "machine": {"python": platform.python_version(), "cpu_count": os.cpu_count(), "load_average": os.getloadavg(), "pymupdf": pymupdf.VersionBind},
        "detection": detection(args.corpus, settings),
        "held_out_detection": held_out_detection(args.corpus, settings),
    }
    if not args.skip_citations:
        with tempfile.TemporaryDirectory() as tmp:
            report["citations"] = citations(args.corpus, Path(tmp), args.corpus / "dev_questions.jsonl")
    text = json.dumps(report, indent=2)
    print(text if args.out is None else json.dumps({k: v for k, v in report.items() if k != "citations"} | (
        {"citations": {k: v for k, v in report["citations"].items() if k != "items"}} if "citations" in report else {}), indent=2))
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
