"""Page encoding served by vLLM's pooling runner against the same weights in process: the overheads.

A tiny random-weight ColPali-hf (tests/tiny_models.py; vLLM 0.32 serves transformers' ColPali, and
the CPU build is what this machine has) is encoded both ways on the rendered pages of a real PDF:

  encoder only   `embed_pages` on all pages: in process at several batch sizes, served at several
                 request concurrencies (`PATHORAG_PAGE_BATCH_SIZE`, `PATHORAG_PAGE_ENCODER_CONCURRENCY`)
  end to end     `indexer.jobs.index_pdf` on a PDF of those pages, with the text channels, and the
                 seconds of each stage from its report (extraction runs beside encoding)

Alternatives alternate within each round, so the shared machine's noise hits them alike. vLLM runs
from its own venv (`scripts/setup_vllm_cpu.sh`), float32, on the same cores as this process.

    .venv/bin/python benchmarks/served_encoder.py --pages 24 --rounds 3
    .venv/bin/python benchmarks/served_encoder.py --pdf X.pdf --pages 40 --json out.json

On a GPU machine with vLLM's CUDA build, give a checkpoint both load (`--model DIR`), the device and
the dtype: `--model DIR --device cuda --dtype bfloat16 --vllm-python /path/to/vllm/python`.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import rag  # noqa: F401, I001  (first: the torchvision shim)
import pymupdf

from indexer.jobs import index_pdf
from indexer.pages import render_page
from indexer.settings import IndexerSettings
from rag.encoders import Encoders
from rag.encoders.page import load_page_encoder
from rag.encoders.sparse import Bm25Encoder
from rag.encoders.text import load_text_encoder
from rag.page_index import PageIndex
from tests.tiny_models import build_tiny_colpali_hf
from tests.vllm_server import default_vllm_python, start_vllm, vllm_python_problem

DEFAULT_PDF = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "manual_of_surgery_dev_haystack.pdf"
SERVED_NAME = "tiny-colpali-hf"


def _sub_pdf(pdf: Path, first: int, count: int, out: Path) -> Path:
    with pymupdf.open(pdf) as doc, pymupdf.open() as sub:
        sub.insert_pdf(doc, from_page=first - 1, to_page=min(doc.page_count, first + count - 1) - 1)
        sub.save(out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pdf", type=Path, default=DEFAULT_PDF)
    parser.add_argument("--pages", type=int, default=24)
    parser.add_argument("--first", type=int, default=40, help="first page (skips front matter)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-sizes", default="1,4,8", help="in-process page batch sizes")
    parser.add_argument("--concurrency", default="1,4,8", help="served request concurrencies")
    parser.add_argument("--model", type=Path, help="a checkpoint vLLM and pathorag both load (default: tiny ColPali-hf)")
    parser.add_argument("--device", default="cpu", help="torch device of the in-process encoder")
    parser.add_argument("--dtype", default="float32", help="dtype of both encoders")
    parser.add_argument("--vllm-python", type=Path, help="python of a venv with vLLM (default: the CPU build's)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    python = args.vllm_python or default_vllm_python()
    if problem := vllm_python_problem(python):
        raise SystemExit(f"no vLLM CPU venv ({problem}); run scripts/setup_vllm_cpu.sh")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        pdf = _sub_pdf(args.pdf, args.first, args.pages, tmp / "pages.pdf")
        base = IndexerSettings(_env_file=None, data_dir=tmp / "data", ocr=False, device=args.device, dtype=args.dtype)
        with pymupdf.open(pdf) as doc:
            images = [render_page(page, base.render_dpi, base.max_page_pixels) for page in doc]
        model_dir = args.model or build_tiny_colpali_hf(tmp / "tiny-colpali-hf")
        server = start_vllm(python, model_dir, served_name=SERVED_NAME, runner="pooling", dtype=args.dtype,
                            log_path=tmp / "vllm.log", startup_timeout=900)  # fmt: skip
        try:
            url = f"http://127.0.0.1:{server.port}"
            rows = _measure(args, base, url, model_dir, images, pdf, tmp)
        finally:
            server.stop()
    result = {
        "machine": f"{platform.node()}: {platform.processor() or platform.machine()}, "
        f"{__import__('os').cpu_count()} CPUs",
        "command": " ".join(sys.argv),
        "pdf": f"{args.pdf.name} pages {args.first}-{args.first + len(images) - 1}",
        "vllm_started_in_s": round(server.started_in_s, 1),
        "rows": rows,
    }
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


def _measure(args, base: IndexerSettings, url: str, model_dir: Path, images, pdf: Path, tmp: Path) -> list[dict]:
    variants = {f"in process, batch {b}": base.model_copy(update={"page_encoder": str(model_dir), "page_batch_size": b})
                for b in map(int, args.batch_sizes.split(","))}  # fmt: skip
    variants |= {
        f"served, concurrency {c}": base.model_copy(
            update={"page_encoder": SERVED_NAME, "page_encoder_url": url, "page_encoder_concurrency": c}
        )
        for c in map(int, args.concurrency.split(","))
    }
    encoders = {name: load_page_encoder(settings) for name, settings in variants.items()}
    for encoder in encoders.values():
        encoder.embed_pages(images[:2])  # warm-up
    seconds: dict[str, list[float]] = {name: [] for name in encoders}
    for _ in range(args.rounds):
        for name, encoder in encoders.items():
            started = time.perf_counter()
            encoder.embed_pages(images)
            seconds[name].append(time.perf_counter() - started)
    rows = [
        {"stage": f"page encoder only, {name}", "pages": len(images),
         "pages_per_s": round(len(images) / statistics.median(s), 2), "median_s": round(statistics.median(s), 3)}
        for name, s in seconds.items()
    ]  # fmt: skip

    text = load_text_encoder(base)
    end_to_end = {"in process": f"in process, batch {base.page_batch_size}", "served": "served, concurrency 8"}
    stages: dict[str, list[dict]] = {name: [] for name in end_to_end}
    for round_ in range(args.rounds):
        for name, variant in end_to_end.items():
            settings = variants[variant].model_copy(update={"data_dir": tmp / f"e2e-{name}-{round_}"})
            index = PageIndex(settings, encoders=Encoders(text=text, sparse=Bm25Encoder(), page=encoders[variant]))
            started = time.perf_counter()
            report = index_pdf(index, pdf)
            wall = time.perf_counter() - started
            index.close()
            assert report.status == "indexed", report.error
            stages[name].append({"wall": wall, **report.stage_seconds})
    for name, runs in stages.items():
        median = {stage: statistics.median(run.get(stage, 0.0) for run in runs) for stage in runs[0]}
        rows.append({
            "stage": f"end to end ({name}; {end_to_end[name]})", "pages": len(images),
            "pages_per_s": round(len(images) / median["wall"], 2),
            "stage_pages_per_s": {stage: round(len(images) / s, 1) for stage, s in median.items() if s and stage != "wall"},
        })  # fmt: skip
    return rows


if __name__ == "__main__":
    main()
