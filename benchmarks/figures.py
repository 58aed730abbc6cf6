"""Figures as evidence (issue #17): how well the indexer finds figures, and how often an answer's
citations hold the figure a question is about.

  detection   every page of the development PDFs with a page map (`figures`, `figure_captions`):
              the figures found on each page (indexer.pages, as indexing does) against the map's,
              matched by printed number; recall, precision, caption agreement, ms/page; the visual
              tokens a ColQwen2-family encoder would give the crops, against the pages' (what figure
              points add to page-encoder work and to the store); and on the
              bacteriology book (no figure map; not looked at while the detector was written) the
              share of its 171 figure numbers found
  citations   the `figure_vqa` questions answered evidence-only by the agent: how often a citation is
              the figure's page and carries that figure. Text channels only: the question's text and
              options. With `--page-encoder` (a model name or path, or `tiny`: a random-weight ColQwen2
              built here) the library also gets page and figure-crop vectors and each question brings
              its image; run twice, alternated per question: with the `figure` channel (the image
              against the figure crops) and without it, and how often a cited page's matched figure
              is the question's

    .venv/bin/python benchmarks/figures.py --corpus ../shared/corpora --out figures.json
    .venv/bin/python benchmarks/figures.py --corpus ../shared/corpora --page-encoder tiny --out figures-visual.json
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
# ColQwen2/2.5 processors: one visual token per 28 x 28 pixels after 2 x 2 merging, at most 768 an image
# (colqwen2-v1.0's max_num_visual_tokens; larger images are scaled down to fit).
PIXELS_PER_TOKEN, MAX_TOKENS = 28 * 28, 768


def visual_tokens(width: float, height: float) -> int:
    return max(4, min(MAX_TOKENS, round(width * height / PIXELS_PER_TOKEN)))


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
        page_tokens = crop_tokens = 0
        scale = IndexerSettings.model_fields["render_dpi"].default / settings.render_dpi  # tokens as indexed
        for extracted in pdfpages.extract_pages(doc, settings):
            width, height = (side * scale for side in extracted.image.size)
            page_tokens += visual_tokens(width, height)
            crop_tokens += sum(visual_tokens((f.box[2] - f.box[0]) * width, (f.box[3] - f.box[1]) * height) for f in extracted.figures)
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
            "crop_tokens_per_page_token": round(crop_tokens / page_tokens, 3),
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


def citations(corpus: Path, data_dir: Path, questions: Path, page_encoder: str = "none") -> dict:
    from PIL import Image

    from agent import Agent
    from indexer.jobs import index_pdf
    from pathorag.evaluation.items import load_items
    from rag.page_index import PageIndex
    from server.settings import ServerSettings

    settings = ServerSettings(_env_file=None, data_dir=data_dir, page_encoder=page_encoder, vlm_base_url=None)
    index = PageIndex(settings)
    book_ids = {}
    started = time.perf_counter()
    for pdf in ("manual_of_surgery_dev.pdf", "diseases_of_cattle_dev.pdf"):
        report = index_pdf(index, corpus / pdf)
        book_ids[pdf] = report.book_id
    indexing_s = time.perf_counter() - started
    items = [item for item in load_items(questions)[0] if item.type == "figure_vqa"]
    entries = {pdf: {e["pdf_page"]: e for e in json.loads((corpus / pdf.replace(".pdf", ".page_map.json")).read_text())} for pdf in book_ids}
    # With a page encoder: the figure channel searched ("crops") or left out ("pages"), alternated per question.
    runs = ["crops", "pages"] if page_encoder != "none" else ["text"]
    search_figures = index.store.search_figures
    agent = Agent(settings, index)
    counts = {run: {"page_cited": 0, "figure_cited": 0, "figure_matched": 0, "seconds": 0.0} for run in runs}
    rows = []
    for item in items:
        page = item.support[0]
        gold = gold_numbers(entries[item.book][page])
        images = [Image.open(item.image).convert("RGB")] if page_encoder != "none" and item.image else []
        row = {"id": item.id, "gold": gold}
        for run in runs:
            index.store.search_figures = search_figures if run == "crops" else (lambda query, page_filter: [])
            asked = time.perf_counter()
            result = agent.run(item.question, choices=item.options, images=images)
            on_page = [c for c in result.citations if c.book_id == book_ids[item.book] and c.page == page]
            with_figure = [c for c in on_page if any(f.number.lower() in gold for f in c.figures)]
            matched = [c for c in on_page if c.matched_figure and c.figures[c.matched_figure - 1].number.lower() in gold]
            outcome = {"page_cited": bool(on_page), "figure_cited": bool(with_figure), "figure_matched": bool(matched)}
            for key, value in outcome.items():
                counts[run][key] += value
            counts[run]["seconds"] += time.perf_counter() - asked
            row[run] = outcome
        rows.append(row)
    agent.close()
    index.close()
    n = len(items)
    summary = {run: {key: round(value / n, 3) for key, value in run_counts.items()} for run, run_counts in counts.items()}
    return {"questions": n, "page_encoder": page_encoder, "indexing_s": round(indexing_s, 1), "runs": summary, "items": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=ROOT.parent / "shared" / "corpora")
    parser.add_argument("--skip-citations", action="store_true", help="detection only (no index built)")
    parser.add_argument("--page-encoder", default="none", help="for the citations: none, tiny, or a model name or path")
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
            page_encoder = args.page_encoder
            if page_encoder == "tiny":
                from tests.tiny_models import build_tiny_colqwen2

                page_encoder = str(build_tiny_colqwen2(Path(tmp) / "tiny-colqwen2"))
            report["citations"] = citations(args.corpus, Path(tmp) / "data", args.corpus / "dev_questions.jsonl", page_encoder)
    text = json.dumps(report, indent=2)
    print(text if args.out is None else json.dumps({k: v for k, v in report.items() if k != "citations"} | (
        {"citations": {k: v for k, v in report["citations"].items() if k != "items"}} if "citations" in report else {}), indent=2))
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
