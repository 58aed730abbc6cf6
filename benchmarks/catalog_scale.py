"""Many books in one embedded index: the book list, search filtered to every book, removing and
re-indexing one book, and what removing one book rewrites on disk (issue #16).

The index holds `--books` book records of `--pages-per-book` pages each. A page is a real page of
the PDFs in `--corpus` (their text layer, taken in turn, so the library repeats them under other
books and page numbers) with its MiniLM chunk vectors and BM25 vector, each distinct page encoded
once; written through `PageIndex` as the indexer does. Queries are the questions of `--questions`.
Then, through the shipped code:

  list           PageIndex.books() in a new process's first call (what `pathorag index list` does),
                 and again (kept in memory)
  search         search_pages over every book (bm25 + text), p50 / p95
  remove         PageIndex.remove_book of one book: seconds, the bytes it wrote to storage (/proc/self/io),
                 and the size of the index files it touched (an upper bound)
  reindex        clear_book + add_pages + finish_book of one book

    .venv/bin/python benchmarks/catalog_scale.py --books 3000 --pages-per-book 33 \
        --corpus ../shared/corpora --questions ../shared/corpora/dev_questions_hard.jsonl --out catalog_scale.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import rag  # noqa: E402,F401  (the project's import order: rag before transformers)
from rag.encoders import BM25, TEXT  # noqa: E402
from rag.models import BookRecord, PagePoint, PageRecord  # noqa: E402
from rag.page_index import PageIndex, page_point_id  # noqa: E402
from rag.settings import RagSettings  # noqa: E402

class PageTexts:
    """The corpus's pages, each encoded once: (text, chunk vectors, BM25 vector)."""

    def __init__(self, index: PageIndex, corpus: Path) -> None:
        import pymupdf

        texts = []
        for pdf in sorted(corpus.glob("*.pdf")):
            with pymupdf.open(pdf) as document:
                texts += [page.get_text() for page in document if len(page.get_text().split()) >= 50]
        encoders = index.encoders
        started = time.perf_counter()
        self.pages = [
            (text, encoders.text.embed_documents(encoders.text.chunk(text)), encoders.sparse.embed_document(text))
            for text in texts
        ]
        self.encode_s = time.perf_counter() - started

    def points(self, book_id: str, first: int, count: int) -> list[PagePoint]:
        points = []
        for page in range(1, count + 1):
            text, chunks, bm25 = self.pages[(first + page) % len(self.pages)]
            record = PageRecord(book_id=book_id, title=f"Book {book_id}", page=page, text=text)
            points.append(PagePoint(page_point_id(book_id, page), record, multi={TEXT: chunks}, sparse={BM25: bm25}))
        return points


def _book(n: int) -> BookRecord:
    return BookRecord(book_id=f"{n:024x}", title=f"Book {n}", source_name=f"book-{n}.pdf", page_count=0)


def _changed_bytes(before: dict[str, tuple[int, int]], directory: Path) -> int:
    """Bytes of files that are new or changed (size or mtime) since `before`."""
    total = 0
    for path, state in _file_states(directory).items():
        if before.get(path) != state:
            total += state[0]
    return total


def _written_bytes() -> int:
    """Bytes this process has caused to be written to storage (Linux /proc/self/io), after a sync."""
    os.sync()
    fields = dict(line.split(": ") for line in Path("/proc/self/io").read_text().splitlines())
    return int(fields["write_bytes"])


def _file_states(directory: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in directory.rglob("*") if p.is_file()}


_FIRST_LIST = """
import sys, time
t0 = time.perf_counter()
from rag.page_index import PageIndex
from rag.settings import RagSettings
index = PageIndex(RagSettings(_env_file=None, data_dir=sys.argv[1], page_encoder="none"))
t1 = time.perf_counter()
books = index.books()
t2 = time.perf_counter()
index.books()
t3 = time.perf_counter()
print(len(books), t1 - t0, t2 - t1, t3 - t2)
index.close()
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--books", type=int, default=3000)
    parser.add_argument("--pages-per-book", type=int, default=33)
    parser.add_argument("--corpus", type=Path, default=ROOT.parent / "shared" / "corpora")
    parser.add_argument("--questions", type=Path, default=ROOT.parent / "shared" / "corpora" / "dev_questions_hard.jsonl")
    parser.add_argument("--queries", type=int, default=30)
    parser.add_argument("--out", type=Path, default=Path("catalog_scale.json"))
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="catalog_scale_"))
    settings = RagSettings(_env_file=None, data_dir=data_dir, page_encoder="none")
    index = PageIndex(settings)
    texts = PageTexts(index, args.corpus)
    report: dict = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "args": {k: str(v) for k, v in vars(args).items()},
        "distinct_pages": len(texts.pages), "encode_s": texts.encode_s,
    }

    t0 = time.perf_counter()
    write_s = []
    for n in range(args.books):
        book = _book(n)
        index.start_book(book)
        start = time.perf_counter()
        index.add_pages(texts.points(book.book_id, n * args.pages_per_book, args.pages_per_book))
        write_s.append(time.perf_counter() - start)
        index.finish_book(book.model_copy(update={"page_count": args.pages_per_book}), [])
        if (n + 1) % 500 == 0:
            print(f"{n + 1} books, {(n + 1) * args.pages_per_book} pages, {time.perf_counter() - t0:.0f} s", flush=True)
    report["build"] = {"seconds": time.perf_counter() - t0, "pages": index.store.count_pages(),
                       "add_pages_ms_per_book_p50": 1000 * statistics.median(write_s)}

    from rag.search import SearchQuery, search_pages

    queries = [json.loads(line)["question"] for line in args.questions.read_text().splitlines()[: args.queries]]
    search_pages(index, SearchQuery(text="warm up", channels=("bm25", "text")))
    latencies = []
    for _ in range(3):
        for text in queries:
            start = time.perf_counter()
            hits = search_pages(index, SearchQuery(text=text, channels=("bm25", "text")))
            latencies.append(time.perf_counter() - start)
            assert hits
    report["search_all_books_ms"] = {"p50": 1000 * statistics.median(latencies), "p95": 1000 * float(np.percentile(latencies, 95))}
    start = time.perf_counter()
    index.store.list_books()
    report["store_list_books_ms"] = 1000 * (time.perf_counter() - start)

    victim = _book(args.books // 2).book_id
    before, written = _file_states(data_dir / "index"), _written_bytes()
    start = time.perf_counter()
    assert index.remove_book(victim)
    seconds = time.perf_counter() - start
    report["remove_one_book"] = {
        "seconds": seconds,
        "written_bytes": _written_bytes() - written,  # what the removal wrote (pages the process dirtied)
        "bytes_of_touched_files": _changed_bytes(before, data_dir / "index"),  # upper bound: whole files whose mtime moved
        "index_bytes": sum(s for s, _ in _file_states(data_dir / "index").values()),
    }
    again = _book(args.books // 2 + 1)
    start = time.perf_counter()
    index.clear_book(again.book_id)
    index.add_pages(texts.points(again.book_id, 0, args.pages_per_book))
    index.finish_book(again.model_copy(update={"page_count": args.pages_per_book}), [])
    report["reindex_one_book_s"] = time.perf_counter() - start
    index.close()

    done = subprocess.run([sys.executable, "-c", _FIRST_LIST, str(data_dir)], capture_output=True, text=True, check=True, cwd=ROOT)
    n_books, open_s, first_s, again_s = done.stdout.split()
    report["index_list"] = {"books": int(n_books), "open_s": float(open_s), "first_books_ms": 1000 * float(first_s),
                            "second_books_ms": 1000 * float(again_s)}
    args.out.write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
