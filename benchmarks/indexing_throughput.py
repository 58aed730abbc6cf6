"""Indexing throughput per stage, in pages/s, so the slowest stage is visible.

Runs the project's own functions on the pages of a real PDF, one stage at a time:

  render        indexer.pages.render_page (settings' dpi and pixel cap)
  text          the text layer read into blocks, captions and headings (indexer.pages._read_layout)
  ocr           Tesseract through PyMuPDF (indexer.pages._ocr_textpage), forced on a sample of pages
  page image    rag.page_images.PageImageStore.put (WebP encode + atomic write)
  word boxes    the words' boxes read (indexer.pages._read_words) and stored (rag.page_words.PageWordStore.put),
                and a citation's passage located among them (rag.page_words.passage_boxes)
  text encoder  chunking + MiniLM (rag.encoders.text), per page as indexing does, and all chunks at once
  bm25          rag.encoders.sparse.Bm25Encoder.embed_document
  page encoder  a tiny random-weight ColQwen2 (tests/tiny_models.py) on CPU, rag.encoders.colpali.ColPaliEncoder
  upsert        the points of these pages written to a fresh embedded store
  end to end    indexer.jobs.index_pdf on a PDF of just these pages (text channels; + tiny page encoder)

`--real-size` instead measures the page encoder at real size: ColQwen3's architecture (`--family
colqwen3`, the Qwen3-VL-4B backbone of tomoro-colqwen3-embed-4b) or ColQwen2.5's (Qwen2.5-VL-3B),
768 visual tokens per page, with random weights in bf16 on CUDA, fed the rendered pages through
`rag.encoders.colpali.ColPaliEncoder`; `--real-size --tiny-config` runs that same code path with a
toy config on CPU.

    .venv/bin/python benchmarks/indexing_throughput.py --pages 40
    .venv/bin/python benchmarks/indexing_throughput.py --pdf X.pdf --pages 20 --json out.json
    .venv/bin/python benchmarks/indexing_throughput.py --real-size --pages 64 --batch 16   # GPU machine
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import rag  # noqa: F401, I001  (first: installs the torchvision shim colpali_engine needs)
import pymupdf
import torch

from indexer import pages as pdfpages
from indexer.settings import IndexerSettings

DEFAULT_PDF = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "manual_of_surgery_dev_haystack.pdf"
REFERENCE_S_PER_PAGE = 0.39  # ColQwen2.5 page encoding, reference figure of issue #5


class Timer:
    """Seconds of each call of one stage."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    def __call__(self, fn: Callable, *args, **kwargs):
        started = time.perf_counter()
        result = fn(*args, **kwargs)
        self.seconds.append(time.perf_counter() - started)
        return result


def _row(stage: str, seconds: list[float], pages: int, note: str = "") -> dict:
    total = sum(seconds)
    return {
        "stage": stage,
        "pages": pages,
        "total_s": round(total, 3),
        "ms_per_page": round(1000 * total / pages, 1) if pages else None,
        "pages_per_s": round(pages / total, 2) if total else None,
        "median_call_ms": round(1000 * statistics.median(seconds), 1) if seconds else None,
        "note": note,
    }


def _pick_pages(doc: pymupdf.Document, count: int, first: int) -> list[int]:
    last = min(doc.page_count, first + count - 1)
    return list(range(first, last + 1))


def measure_stages(pdf: Path, numbers: list[int], settings: IndexerSettings, ocr_sample: int, tiny_page: bool) -> list[dict]:
    from indexer.jobs import BookMeta, encode_pages, index_pdf
    from rag.encoders.sparse import Bm25Encoder
    from rag.encoders.text import load_text_encoder
    from rag.models import BookRecord
    from rag.page_images import PageImageStore
    from rag.page_index import PageIndex

    rows = []
    doc = pymupdf.open(pdf)
    path = Path(doc.name)
    pages = [doc.load_page(n - 1) for n in numbers]

    render, text = Timer(), Timer()
    images, texts = [], []
    for page in pages:
        images.append(
            render(
                pdfpages.render_page,
                page,
                settings.render_dpi,
                settings.max_page_pixels,
            )
        )
        texts.append(text(pdfpages._read_layout, page, path, None, None).text)
    size = images[0].size
    rows.append(
        _row(
            "render",
            render.seconds,
            len(pages),
            f"{settings.render_dpi} dpi, first page {size[0]}x{size[1]}",
        )
    )
    rows.append(_row("text layer (blocks, captions)", text.seconds, len(pages)))
    rows += _word_box_rows(pages, path, texts)

    if ocr_sample and pdfpages._tessdata(settings.ocr_language) is not None:
        ocr = Timer()
        for page in pages[:ocr_sample]:
            ocr(pdfpages._ocr_textpage, page, settings)
        rows.append(
            _row(
                "OCR (Tesseract, forced)",
                ocr.seconds,
                len(ocr.seconds),
                f"{pdfpages.OCR_DPI} dpi, full page",
            )
        )
    elif ocr_sample:
        rows.append({"stage": "OCR", "note": "Tesseract not found: not measured"})

    with tempfile.TemporaryDirectory() as tmp:
        store = PageImageStore(Path(tmp) / "pages")
        put = Timer()
        for image in images:
            put(store.put, image)
        stored = sorted((Path(tmp) / "pages").rglob("*.webp"))
        kib = sum(p.stat().st_size for p in stored) / 1024 / max(1, len(stored))
        rows.append(_row("page image (WebP put)", put.seconds, len(images), f"{kib:.0f} KiB/page"))

    loaded = time.perf_counter()
    text_encoder = load_text_encoder(settings)
    load_s = time.perf_counter() - loaded
    chunks = [text_encoder.chunk(t) for t in texts]
    n_chunks = sum(len(c) for c in chunks)
    text_encoder.embed_documents(["warm up"])
    per_page = Timer()
    for page_chunks in chunks:
        per_page(text_encoder.embed_documents, page_chunks)
    rows.append(
        _row("text encoder (MiniLM, one call per page)", per_page.seconds, len(pages),
             f"{n_chunks} chunks of {settings.chunk_words} words; model load {load_s:.1f} s")
    )  # fmt: skip
    batched = Timer()
    flat = [c for page_chunks in chunks for c in page_chunks]
    for start in range(0, len(flat), 8 * 12):  # about one 8-page indexing batch of chunks per call
        batched(text_encoder.embed_documents, flat[start : start + 8 * 12])
    rows.append(
        _row(
            "text encoder (MiniLM, ~96 chunks per call)",
            batched.seconds,
            len(pages),
            f"{n_chunks} chunks",
        )
    )

    sparse = Bm25Encoder()
    bm25 = Timer()
    for t in texts:
        bm25(sparse.embed_document, t)
    rows.append(_row("bm25", bm25.seconds, len(pages)))

    page_settings = settings
    if tiny_page:
        rows.append(_tiny_page_encoder_row(images, settings))

    # Store upsert and end-to-end index_pdf on a PDF of only these pages.
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        sub = tmp / "pages.pdf"
        out = pymupdf.open()
        out.insert_pdf(doc, from_page=numbers[0] - 1, to_page=numbers[-1] - 1)
        out.save(sub)
        out.close()
        run_settings = page_settings.model_copy(update={"data_dir": tmp / "data", "page_encoder": "none"})
        index = PageIndex(run_settings, encoders=_encoders_with(text_encoder, sparse, None))
        book = BookRecord(book_id="bench", title="bench", page_count=len(pages), status="indexing")
        extracted = list(pdfpages.extract_pages(pymupdf.open(sub), run_settings))
        upsert = Timer()
        for start in range(0, len(extracted), 8):
            points = encode_pages(index, book, extracted[start : start + 8])
            upsert(index.store.upsert_pages, points)
        rows.append(_row("store upsert (qdrant-edge, 8-page batches)", upsert.seconds, len(pages)))
        index.close()

        e2e_settings = run_settings.model_copy(update={"data_dir": tmp / "e2e"})
        index = PageIndex(e2e_settings, encoders=_encoders_with(text_encoder, sparse, None))
        started = time.perf_counter()
        report = index_pdf(index, sub, BookMeta())
        e2e = time.perf_counter() - started
        index.close()
        assert report.status == "indexed", report
        rows.append(
            _row(
                "end to end: index_pdf, text channels",
                [e2e],
                report.pages_indexed,
                "OCR only where no text layer",
            )
        )
    doc.close()
    return rows


def _word_box_rows(pages: list[pymupdf.Page], path: Path, texts: list[str]) -> list[dict]:
    from rag.page_words import PageWordStore, passage_boxes
    from rag.search import make_snippet, snippet_text

    read, put, locate = Timer(), Timer(), Timer()
    with tempfile.TemporaryDirectory() as tmp:
        store = PageWordStore(Path(tmp))
        words = [read(pdfpages._read_words, page, path, None) for page in pages]
        for page_words in words:
            put(store.put, page_words)
        kib = sum(p.stat().st_size for p in Path(tmp).rglob("*.json.gz")) / 1024 / max(1, len(words))
    # A passage as citations have it: the snippet for a query made of words from the page's middle.
    for page_words, text in zip(words, texts):
        middle = text.split()[len(text.split()) // 2 :][:8]
        locate(passage_boxes, page_words, snippet_text(make_snippet(text, " ".join(middle))))
    return [
        _row("word boxes (read)", read.seconds, len(pages)),
        _row("word boxes (store)", put.seconds, len(pages), f"{kib:.1f} KiB/page gzipped JSON"),
        _row("passage located (per citation)", locate.seconds, len(pages)),
    ]


def _encoders_with(text_encoder, sparse, page_encoder):
    from rag.encoders import Encoders

    return Encoders(text=text_encoder, sparse=sparse, page=page_encoder)


def _tiny_page_encoder_row(images, settings: IndexerSettings) -> dict:
    from rag.encoders.page import load_page_encoder
    from tests.tiny_models import build_tiny_colqwen2

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_tiny_colqwen2(Path(tmp) / "tiny-colqwen2")
        encoder = load_page_encoder(settings.model_copy(update={"page_encoder": str(model_dir), "device": "cpu"}))
        encoder.embed_pages(images[:1])  # warm-up
        timer = Timer()
        vectors = []
        batch = settings.page_batch_size
        for start in range(0, len(images), batch):
            vectors += timer(encoder.embed_pages, images[start : start + batch])
    rows = statistics.mean(v.shape[0] for v in vectors)
    return _row(
        "page encoder (tiny ColQwen2, CPU)",
        timer.seconds,
        len(images),
        f"{rows:.0f} vectors/page, batch {batch}",
    )


# --- real size ------------------------------------------------------------------------------------


def colqwen25_config(tiny: bool):
    """ColQwen2.5's backbone (Qwen2.5-VL-3B-Instruct's config) or, with `tiny`, the tests' toy one."""
    from transformers import Qwen2_5_VLConfig

    from tests.tiny_models import _qwen_token_ids, qwen_tokenizer

    tokenizer = qwen_tokenizer()
    ids = _qwen_token_ids(tokenizer)
    if tiny:
        text = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
                    "num_key_value_heads": 2, "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0,
                                                            "mrope_section": [2, 3, 3]}}  # fmt: skip
        vision = {"depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "out_hidden_size": 64,
                      "window_size": 56, "fullatt_block_indexes": [1]}  # fmt: skip
    else:  # Qwen/Qwen2.5-VL-3B-Instruct
        text = {"hidden_size": 2048, "intermediate_size": 11008, "num_hidden_layers": 36, "num_attention_heads": 16,
                    "num_key_value_heads": 2, "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0,
                                                            "mrope_section": [16, 24, 24]}}  # fmt: skip
        vision = {"depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16, "out_hidden_size": 2048,
                      "window_size": 112, "fullatt_block_indexes": [7, 15, 23, 31]}  # fmt: skip
    pad = ids  # token ids of the tiny tokenizer all lie below its 512 entries; the embedding is larger
    config = Qwen2_5_VLConfig(
        text_config=dict(vocab_size=151936 if not tiny else len(tokenizer), max_position_embeddings=128000,
                         bos_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, **text),
        vision_config=dict(patch_size=14, spatial_merge_size=2, temporal_patch_size=2, **vision),
        **pad,
    )  # fmt: skip
    return config, tokenizer


def colqwen3_config(tiny: bool):
    """ColQwen3's backbone (Qwen3-VL-4B-Instruct's published config, as in tomoro-colqwen3-embed-4b) or,
    with `tiny`, the tests' toy one."""
    from transformers import Qwen3VLConfig

    from tests.tiny_models import _qwen3_vision_config, _qwen_text_config, _qwen_token_ids, qwen_tokenizer

    tokenizer = qwen_tokenizer()
    if tiny:
        text = _qwen_text_config(tokenizer, rope={"mrope_interleaved": True}, head_dim=16)
        vision = _qwen3_vision_config(deepstack_visual_indexes=[0])
    else:  # Qwen/Qwen3-VL-4B-Instruct
        text = _qwen_text_config(
            tokenizer, rope={"rope_theta": 5000000.0, "mrope_section": [24, 20, 20], "mrope_interleaved": True},
            vocab_size=151936, hidden_size=2560, intermediate_size=9728, num_hidden_layers=36,
            num_attention_heads=32, num_key_value_heads=8, head_dim=128, max_position_embeddings=262144,
            tie_word_embeddings=True,
        )  # fmt: skip
        vision = {"depth": 24, "hidden_size": 1024, "intermediate_size": 4096, "num_heads": 16, "patch_size": 16,
                  "spatial_merge_size": 2, "temporal_patch_size": 2, "out_hidden_size": 2560,
                  "num_position_embeddings": 2304, "deepstack_visual_indexes": [5, 11, 17]}  # fmt: skip
    config = Qwen3VLConfig(text_config=text, vision_config=vision, **_qwen_token_ids(tokenizer))
    return config, tokenizer


def measure_real_size(
    pdf: Path, numbers: list[int], settings: IndexerSettings, tiny: bool, batch: int, family: str
) -> list[dict]:
    """pages/s of ColQwen2.5 or ColQwen3 at real size (random bf16 weights, CUDA) through rag's ColPaliEncoder."""
    from colpali_engine.models import ColQwen2_5, ColQwen2_5_Processor, ColQwen3, ColQwen3Processor
    from transformers import Qwen2VLVideoProcessor, Qwen3VLVideoProcessor
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
        Qwen2VLImageProcessorPil,
    )

    from rag.encoders.colpali import ColPaliEncoder
    from rag.models import EncoderInfo

    device = "cpu" if tiny else "cuda"
    dtype = torch.float32 if tiny else torch.bfloat16
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--real-size needs a CUDA GPU (add --tiny-config to run its code path on CPU)")
    visual_tokens = 64 if tiny else 768  # the processors' max_num_visual_tokens (colqwen2.5-v0.2: 768)
    if family == "colqwen3":  # 16-pixel patches
        model_cls, processor_cls, video_cls, patch = ColQwen3, ColQwen3Processor, Qwen3VLVideoProcessor, 16
        config, tokenizer = colqwen3_config(tiny)
    else:
        model_cls, processor_cls, video_cls, patch = ColQwen2_5, ColQwen2_5_Processor, Qwen2VLVideoProcessor, 14
        config, tokenizer = colqwen25_config(tiny)
    tile = 2 * patch
    size = {"shortest_edge": 4 * tile * tile, "longest_edge": visual_tokens * tile * tile}
    patches = {"patch_size": patch, "temporal_patch_size": 2, "merge_size": 2}
    processor = processor_cls(
        image_processor=Qwen2VLImageProcessorPil(**patches, size=size),
        tokenizer=tokenizer,
        video_processor=video_cls(**patches, size=dict(size)),
    )
    config._attn_implementation = "sdpa"
    built = time.perf_counter()
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = model_cls(config).eval()
    finally:
        torch.set_default_dtype(previous)
    build_s = time.perf_counter() - built
    params = sum(p.numel() for p in model.parameters()) / 1e9
    info = EncoderInfo(
        name=f"random {family}",
        revision="random",
        dim=model.dim,
        pooling="multivector, MaxSim",
    )
    encoder = ColPaliEncoder(
        model,
        processor,
        info,
        device,
        settings.model_copy(update={"page_batch_size": batch}),
    )

    doc = pymupdf.open(pdf)
    images = [
        pdfpages.render_page(doc.load_page(n - 1), settings.render_dpi, settings.max_page_pixels) for n in numbers
    ]
    encoder.embed_pages(images[:batch])  # warm-up (kernels, allocator)
    if device == "cuda":
        torch.cuda.synchronize()
    timer = Timer()
    vectors = []
    for start in range(0, len(images), batch):
        vectors += timer(encoder.embed_pages, images[start : start + batch])
    if device == "cuda":
        torch.cuda.synchronize()
    rows_per_page = statistics.mean(v.shape[0] for v in vectors)
    row = _row(
        f"page encoder, {family} architecture{' (TINY config)' if tiny else ''}, random weights, "
        f"{str(dtype).removeprefix('torch.')}, {device}",
        timer.seconds, len(images),
        f"{params:.2f} B params, built in {build_s:.0f} s, {rows_per_page:.0f} vectors/page, batch {batch}; "
        f"reference {REFERENCE_S_PER_PAGE} s/page = {1 / REFERENCE_S_PER_PAGE:.2f} pages/s",
    )  # fmt: skip
    if device == "cuda":
        row["gpu"] = torch.cuda.get_device_name(0)
        row["max_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 1)
    return [row]


# --- report ---------------------------------------------------------------------------------------


def environment() -> dict:
    import PIL

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "pymupdf": pymupdf.__version__,
        "pillow": PIL.__version__,
        "cpu_count": __import__("os").cpu_count(),
        "load_average": __import__("os").getloadavg(),
    }


def print_table(rows: list[dict]) -> None:
    print("| stage | pages | ms/page | pages/s | note |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['stage']} | {r.get('pages', '')} | {r.get('ms_per_page', '')} | {r.get('pages_per_s', '')} | {r.get('note', '')} |"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pdf", type=Path, default=DEFAULT_PDF)
    parser.add_argument("--pages", type=int, default=40, help="pages measured (consecutive)")
    parser.add_argument(
        "--first",
        type=int,
        default=20,
        help="first page (1-based); front matter is atypical",
    )
    parser.add_argument("--ocr-sample", type=int, default=3, help="pages OCRed (forced); 0 = skip OCR")
    parser.add_argument("--no-page-encoder", action="store_true", help="skip the tiny page encoder")
    parser.add_argument("--real-size", action="store_true", help="a page encoder at real size, bf16, CUDA")
    parser.add_argument("--family", choices=["colqwen3", "colqwen2.5"], default="colqwen3",
                        help="with --real-size: ColQwen3 (Qwen3-VL-4B backbone) or ColQwen2.5 (Qwen2.5-VL-3B)")
    parser.add_argument("--tiny-config", action="store_true", help="with --real-size: toy config on CPU")
    parser.add_argument(
        "--batch",
        type=int,
        default=4,
        help="pages per page-encoder batch (--real-size)",
    )
    parser.add_argument("--json", type=Path, help="also write the rows and environment here")
    args = parser.parse_args(argv)

    settings = IndexerSettings(page_encoder="none", device="cpu")
    doc = pymupdf.open(args.pdf)
    first = min(args.first, doc.page_count)
    numbers = _pick_pages(doc, args.pages, first)
    doc.close()
    print(f"{args.pdf.name}: pages {numbers[0]}..{numbers[-1]}", file=sys.stderr)
    if args.real_size:
        if not args.tiny_config:
            settings = IndexerSettings(page_encoder="none", device="cuda")
        rows = measure_real_size(args.pdf, numbers, settings, args.tiny_config, args.batch, args.family)
    else:
        rows = measure_stages(args.pdf, numbers, settings, args.ocr_sample, not args.no_page_encoder)
    env = environment()
    print(json.dumps(env), file=sys.stderr)
    print_table(rows)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "pdf": str(args.pdf),
                    "pages": numbers,
                    "environment": env,
                    "rows": rows,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
