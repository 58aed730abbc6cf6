"""Visual-channel retrieval at scale: prefetch + rerank strategies on qdrant-edge, against exact MaxSim.

Synthetic ColQwen-shaped page multivectors (see retrieval_scale_data.py) are added to one shard per
storage layout in steps (2k, then 10k, then 20k pages, the same pages growing), and after each step
every strategy is measured: p50/p95 query latency, recall@10 against exact MaxSim (numpy, float32
arithmetic over all pages), bytes per page on disk per named vector, RSS growth, upsert rate and
reopen time. qdrant-client's local mode is measured as a baseline at the smallest size.

The `production` shard is built and searched by the shipped code, not a re-implementation: pages
get `rag.encoders.visual_vectors` (FDE + k-means centroids) in the layout of
`rag.encoders.page_vector_specs`, stored through `rag.store.EdgeStore`, and each query is the
`rag.search.visual_query` chain at the production limit of the visual channels (RagSettings'
`visual_prefetch_limit`);
its top 10 are scored.

usage:
  .venv/bin/python benchmarks/retrieval_scale.py --pages 2000 10000 20000 --queries 50 --out scale.json
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # small per-page matmuls; threads only contend here

import argparse
import json
import platform
import shutil
import statistics
import sys
import time
import uuid
from dataclasses import dataclass, field
from multiprocessing import Pool
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import rag  # noqa: E402,F401  (the project's import order: rag before transformers)
import qdrant_edge as qe  # noqa: E402

from benchmarks.retrieval_scale_data import DIM, World, make_page, make_query, mean_vector, row_means  # noqa: E402
from rag.encoders import page_vector_specs, visual_vectors  # noqa: E402
from rag.encoders.multivector import FixedDimensionalEncoder, page_centroids  # noqa: E402
from rag.models import PagePoint, PageRecord  # noqa: E402
from rag.search import visual_query  # noqa: E402
from rag.settings import RagSettings  # noqa: E402
from rag.store import ChannelQuery, PageFilter  # noqa: E402
from rag.store.edge import EdgeStore  # noqa: E402

TOP_K = 10
UPSERT_BATCH = 32
CENTROIDS = 32
TOKEN_POOL_FACTOR = 3
QUERY_PAGES_FROM = 2000  # queries come from the first pages, so they stay valid as the corpus grows


# --- page representations ----------------------------------------------------------------------


@dataclass
class PageVectors:
    full: np.ndarray  # (n, DIM) float16
    pool3: np.ndarray | None  # (~n/3, DIM) float16: k-means token pooling (only with the pool3 shard)
    mean: np.ndarray  # (DIM,)
    rows: np.ndarray | None  # (~27, DIM) float16: one mean per grid row (these three: only with a sweep shard)
    cent: np.ndarray | None  # (<=32, DIM) float16: k-means centroids
    fde: np.ndarray | None  # (FixedDimensionalEncoder.dim,) float32
    production: tuple[dict, dict] | None  # rag.encoders.visual_vectors (only with the production shard)


PRODUCTION_FDE = FixedDimensionalEncoder(DIM)  # what a 128-d page encoder's PageEncoder.fde is
PRODUCTION_LIMIT = max(RagSettings(_env_file=None).visual_prefetch_limit, TOP_K)  # what search_pages asks the page channel for


def sweep_fde(seed: int) -> FixedDimensionalEncoder:
    """The strategies' `fde` vectors: 2 048-d (8 repetitions), the size production used before it
    took 16 repetitions (4 096-d); BENCHMARKS.md's strategy tables were measured with it."""
    return FixedDimensionalEncoder(DIM, reps=8, seed=seed)


_WORKER: dict = {}


def _init_worker(seed: int, shards: tuple[str, ...]) -> None:
    _WORKER["world"] = World.make(seed)
    _WORKER["shards"] = shards
    _WORKER["fde"] = sweep_fde(seed)
    _WORKER["seed"] = seed


def _page_vectors(page: int) -> tuple[PageVectors, float]:
    tokens = make_page(_WORKER["world"], _WORKER["seed"], page)
    start = time.perf_counter()
    sweep = set(_WORKER["shards"]) - {"production"}  # the strategies' own representations, when measured
    vectors = PageVectors(
        full=tokens.astype(np.float16),
        pool3=page_centroids(tokens, len(tokens) // TOKEN_POOL_FACTOR, iterations=4).astype(np.float16)
        if "pool3" in sweep
        else None,
        mean=mean_vector(tokens),
        rows=row_means(tokens).astype(np.float16) if sweep else None,
        cent=page_centroids(tokens, CENTROIDS).astype(np.float16) if sweep else None,
        fde=_WORKER["fde"].page(tokens) if sweep else None,
        production=visual_vectors(tokens, PRODUCTION_FDE) if "production" in _WORKER["shards"] else None,
    )
    return vectors, time.perf_counter() - start


# --- shards and strategies ---------------------------------------------------------------------

_NO_HNSW = qe.HnswIndexConfig(m=0, ef_construct=100, full_scan_threshold=10_000)
F16, T8, T4 = qe.VectorStorageDatatype.Float16, qe.VectorStorageDatatype.Turbo8, qe.VectorStorageDatatype.Turbo4


def _multi(datatype: qe.VectorStorageDatatype | None) -> qe.EdgeVectorParams:
    return qe.EdgeVectorParams(
        size=DIM,
        distance=qe.Distance.Cosine,
        multivector_config=qe.MultiVectorConfig(qe.MultiVectorComparator.MaxSim),
        datatype=datatype,
        hnsw_config=_NO_HNSW,
    )


def _dense(size: int, distance: qe.Distance, datatype: qe.VectorStorageDatatype | None = None) -> qe.EdgeVectorParams:
    return qe.EdgeVectorParams(size=size, distance=distance, datatype=datatype)


def shard_layouts(fde_dim: int) -> dict[str, dict[str, tuple[str, qe.EdgeVectorParams]]]:
    """Shard name -> stored vector name -> (representation, params)."""
    fde = ("fde", _dense(fde_dim, qe.Distance.Dot, F16))
    cent = ("cent", _multi(F16))
    return {
        "f16": {
            "full": ("full", _multi(F16)),
            "mean": ("mean", _dense(DIM, qe.Distance.Cosine)),
            "rows": ("rows", _multi(F16)),
            "cent": cent,
            "fde": fde,
        },
        "pool3": {"pool3": ("pool3", _multi(F16)), "cent": cent, "fde": fde},
        "t8": {
            "full": ("full", _multi(T8)),
            "cent": cent,
            "fde": fde,
            "cent_t8": ("cent", _multi(T8)),
            "fde_t8": ("fde", _dense(fde_dim, qe.Distance.Dot, T8)),
        },
        # The shipped layout's stages with the page tokens in 4-bit TurboQuant (half of turbo8).
        "t4": {"full": ("full", _multi(T4)), "cent": cent, "fde_t8": ("fde", _dense(fde_dim, qe.Distance.Dot, T8))},
    }


@dataclass(frozen=True)
class Strategy:
    name: str
    shard: str
    rerank: str  # stored vector scored by exact MaxSim for the final top 10
    chain: tuple[tuple[str, int], ...] = ()  # prefetch stages, first (widest) first
    exact_only_subset: bool = False  # full scans: measured on --exact-queries only

    def vectors(self) -> list[str]:
        return [self.rerank] + [using for using, _ in self.chain]


STRATEGIES = [
    Strategy("exact MaxSim, float16", "f16", "full", exact_only_subset=True),
    Strategy("mean 40 -> full f16 (old production for top 10: limit x 4)", "f16", "full", (("mean", 40),)),
    Strategy("mean 400 -> full f16 (plain recipe)", "f16", "full", (("mean", 400),)),
    Strategy("rows 100 -> full f16", "f16", "full", (("rows", 100),)),
    Strategy("cent32 100 -> full f16", "f16", "full", (("cent", 100),)),
    Strategy("cent32 200 -> full f16", "f16", "full", (("cent", 200),)),
    Strategy("fde 1000 -> cent32 100 -> full f16", "f16", "full", (("fde", 1000), ("cent", 100))),
    Strategy("cent32 100 -> pool3 f16", "pool3", "pool3", (("cent", 100),)),
    Strategy("fde 1000 -> cent32 100 -> pool3 f16", "pool3", "pool3", (("fde", 1000), ("cent", 100))),
    Strategy("exact MaxSim, turbo8", "t8", "full", exact_only_subset=True),
    Strategy("cent32 100 -> full turbo8", "t8", "full", (("cent", 100),)),
    Strategy("fde 1000 -> cent32 100 -> full turbo8", "t8", "full", (("fde", 1000), ("cent", 100))),
    # Stage widths with every visual vector in turbo8.
    *(
        Strategy(f"all turbo8: fde {fde} -> cent32 {cent} -> full", "t8", "full", (("fde_t8", fde), ("cent_t8", cent)))
        for fde, cent in ((1000, 100), (1000, 150), (2000, 100), (2000, 150), (2000, 200))
    ),
    # Page tokens in turbo8 against turbo4 behind the shipped stages (FDE turbo8, centroids float16).
    Strategy("exact MaxSim, turbo4", "t4", "full", exact_only_subset=True),
    *(
        Strategy(f"fde_t8 {fde} -> cent {cent} -> full {name}", shard, "full", (("fde_t8", fde), ("cent", cent)))
        for fde, cent in ((1000, 50), (2000, 100))
        for name, shard in (("turbo8", "t8"), ("turbo4", "t4"))
    ),
]


@dataclass
class QueryVectors:
    tokens: np.ndarray  # (20, DIM)
    mean: np.ndarray
    fde: np.ndarray

    def for_vector(self, rep: str) -> np.ndarray:
        if rep == "mean":
            return self.mean
        if rep == "fde":
            return self.fde
        return self.tokens


def build_request(strategy: Strategy, query: QueryVectors, reps: dict[str, str]) -> qe.QueryRequest:
    prefetch = None
    for using, limit in strategy.chain:
        prefetch = qe.Prefetch(
            limit=limit,
            query=qe.Query.Nearest(query.for_vector(reps[using]), using=using),
            prefetches=[prefetch] if prefetch is not None else None,
        )
    return qe.QueryRequest(
        limit=TOP_K,
        query=qe.Query.Nearest(query.for_vector(reps[strategy.rerank]), using=strategy.rerank),
        prefetches=[prefetch] if prefetch is not None else None,
    )


# --- measurements ------------------------------------------------------------------------------


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def disk_bytes(path: Path) -> tuple[int, dict[str, int]]:
    """Allocated bytes of the whole directory, and per `vector_storage-<name>` directory."""
    total, per_vector = 0, {}
    for root, _, files in os.walk(path):
        size = sum(os.stat(os.path.join(root, f)).st_blocks * 512 for f in files)
        total += size
        for part in Path(root).relative_to(path).parts:
            if part.startswith("vector_storage-"):
                name = part.removeprefix("vector_storage-")
                per_vector[name] = per_vector.get(name, 0) + size
                break
    return total, per_vector


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


@dataclass
class Corpus:
    pages: list[PageVectors] = field(default_factory=list)
    prep_seconds: float = 0.0
    gen_seconds: float = 0.0


def grow_corpus(corpus: Corpus, n_pages: int, seed: int, workers: int, shards: tuple[str, ...]) -> None:
    start = time.perf_counter()
    todo = range(len(corpus.pages), n_pages)
    with Pool(workers, initializer=_init_worker, initargs=(seed, shards)) as pool:
        for vectors, prep in pool.imap(_page_vectors, todo, chunksize=16):
            corpus.pages.append(vectors)
            corpus.prep_seconds += prep
    corpus.gen_seconds += time.perf_counter() - start


def exact_scores(pages: list[PageVectors], queries: list[QueryVectors], chunk_pages: int = 100) -> np.ndarray:
    """(n_queries, n_pages) MaxSim scores in float32 over the float16-stored pages."""
    q_all = np.concatenate([q.tokens for q in queries]).astype(np.float32)  # (nq * 20, DIM)
    n_q, q_len = len(queries), len(queries[0].tokens)
    scores = np.empty((n_q, len(pages)), dtype=np.float32)
    for start in range(0, len(pages), chunk_pages):
        block = pages[start : start + chunk_pages]
        tokens = np.concatenate([p.full for p in block]).astype(np.float32)
        offsets = np.cumsum([0] + [len(p.full) for p in block[:-1]])
        sims = tokens @ q_all.T  # (tokens, nq * 20)
        best = np.maximum.reduceat(sims, offsets, axis=0)  # (pages, nq * 20)
        scores[:, start : start + len(block)] = best.reshape(len(block), n_q, q_len).sum(-1).T
    return scores


def upsert_new(path: Path, layout: dict, corpus: Corpus, start: int, end: int) -> float:
    config = qe.EdgeConfig(vectors={name: params for name, (_, params) in layout.items()})
    shard = qe.EdgeShard.load(str(path), config) if path.exists() else qe.EdgeShard.create(str(path), config)
    t0 = time.perf_counter()
    for s in range(start, end, UPSERT_BATCH):
        points = [
            qe.Point(
                id=i,
                vector={name: getattr(corpus.pages[i], rep).astype(np.float32) for name, (rep, _) in layout.items()},
                payload={"page": i},
            )
            for i in range(s, min(end, s + UPSERT_BATCH))
        ]
        shard.update(qe.UpdateOperation.upsert_points(points))
    shard.flush()
    seconds = time.perf_counter() - t0
    shard.close()
    return seconds


def measure_shard(
    path: Path,
    layout: dict,
    strategies: list[Strategy],
    queries: list[QueryVectors],
    truth: np.ndarray,
    n_exact: int,
    warmup: int,
    rounds: int,
) -> tuple[dict, list[dict]]:
    rss0 = rss_mib()
    t0 = time.perf_counter()
    shard = qe.EdgeShard.load(str(path))
    reopen = time.perf_counter() - t0
    t0 = time.perf_counter()
    shard.query(build_request(strategies[0], queries[0], {n: r for n, (r, _) in layout.items()}))
    first_query = time.perf_counter() - t0
    reps = {name: rep for name, (rep, _) in layout.items()}
    n_pages = truth.shape[1]
    rows = []
    for strategy in strategies:
        subset = queries[:n_exact] if strategy.exact_only_subset else queries
        for query in subset[:warmup]:
            shard.query(build_request(strategy, query, reps))
        latencies, recalls = [], []
        for _ in range(1 if strategy.exact_only_subset else rounds):
            for qi, query in enumerate(subset):
                request = build_request(strategy, query, reps)
                t = time.perf_counter()
                hits = shard.query(request)
                latencies.append(time.perf_counter() - t)
                found = {int(h.id) for h in hits}
                expected = set(np.argsort(-truth[qi])[:TOP_K].tolist())
                recalls.append(len(found & expected) / TOP_K)
        rows.append(
            {
                "strategy": strategy.name,
                "shard": strategy.shard,
                "queries": len(subset),
                "p50_ms": 1000 * statistics.median(latencies),
                "p95_ms": 1000 * percentile(latencies, 95),
                "recall_at_10": float(np.mean(recalls)),
            }
        )
        print(f"  {strategy.name:45s} p50 {rows[-1]['p50_ms']:8.1f} ms  p95 {rows[-1]['p95_ms']:8.1f} ms  "
              f"R@10 {rows[-1]['recall_at_10']:.3f}  (n={len(subset)}, {n_pages} pages)", flush=True)
    rss_growth = rss_mib() - rss0
    shard.close()
    total, per_vector = disk_bytes(path)
    info = {
        "reopen_s": reopen,
        "first_query_s": first_query,
        "rss_growth_mib": rss_growth,
        "disk_bytes_total": total,
        "disk_bytes_per_vector": per_vector,
    }
    for row in rows:
        strategy = next(s for s in strategies if s.name == row["strategy"])
        row["visual_bytes_per_page"] = sum(per_vector.get(v, 0) for v in set(strategy.vectors())) / n_pages
        row["shard_bytes_per_page"] = total / n_pages
    return info, rows


def _production_point_id(page: int) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_OID, f"page-{page}"))


def upsert_production(path: Path, corpus: Corpus, start: int, end: int) -> float:
    store = EdgeStore(path)
    store.ensure_schema(page_vector_specs(DIM))
    t0 = time.perf_counter()
    for s in range(start, end, UPSERT_BATCH):
        points = []
        for i in range(s, min(end, s + UPSERT_BATCH)):
            dense, multi = corpus.pages[i].production
            record = PageRecord(book_id="bench", page=i + 1)
            points.append(PagePoint(_production_point_id(i), record, dense=dense, multi=multi))
        store.upsert_pages(points)
    seconds = time.perf_counter() - t0
    store.close()
    return seconds


def measure_production(
    path: Path, queries: list[QueryVectors], truth: np.ndarray, warmup: int, rounds: int
) -> tuple[dict, list[dict]]:
    """The shipped visual chain (rag.search.visual_query) through the shipped store (EdgeStore)."""
    rss0 = rss_mib()
    t0 = time.perf_counter()
    store = EdgeStore(path)
    store.ensure_schema(page_vector_specs(DIM))
    reopen = time.perf_counter() - t0
    n_pages = truth.shape[1]
    page_of = {_production_point_id(i): i for i in range(n_pages)}
    requests = [visual_query(q.tokens, PRODUCTION_FDE, PRODUCTION_LIMIT, n_pages) for q in queries]
    for request in requests[:warmup]:
        store.search(request, PageFilter())
    latencies, recalls = [], []
    for _ in range(rounds):
        for qi, request in enumerate(requests):
            t = time.perf_counter()
            hits = store.search(request, PageFilter())
            latencies.append(time.perf_counter() - t)
            found = {page_of[h.point_id] for h in hits[:TOP_K]}
            expected = set(np.argsort(-truth[qi])[:TOP_K].tolist())
            recalls.append(len(found & expected) / TOP_K)
    rss_growth = rss_mib() - rss0
    store.close()
    total, per_vector = disk_bytes(path)
    stages: list[str] = []
    query: ChannelQuery | None = requests[0]
    while query is not None:
        stages.insert(0, f"{query.using} {query.limit}")
        query = query.prefetch
    row = {
        "strategy": f"production: {' -> '.join(stages)}, top {TOP_K}",
        "shard": "production",
        "queries": len(queries),
        "p50_ms": 1000 * statistics.median(latencies),
        "p95_ms": 1000 * percentile(latencies, 95),
        "recall_at_10": float(np.mean(recalls)),
        "visual_bytes_per_page": sum(v for k, v in per_vector.items() if k.startswith("page")) / n_pages,
        "shard_bytes_per_page": total / n_pages,
    }
    print(f"  {row['strategy']:45s} p50 {row['p50_ms']:8.1f} ms  p95 {row['p95_ms']:8.1f} ms  "
          f"R@10 {row['recall_at_10']:.3f}  (n={len(queries)}, {n_pages} pages)", flush=True)
    info = {"reopen_s": reopen, "rss_growth_mib": rss_growth, "disk_bytes_total": total, "disk_bytes_per_vector": per_vector}
    info |= cold_start(path, queries[0].tokens)
    print(f"  cold start: first answer {info['cold_start_s']:.2f} s after process start (imports "
          f"{info['cold_start_imports_s']:.2f} s, open {info['cold_start_open_s']:.2f} s, query "
          f"{info['cold_start_first_query_s']:.2f} s), peak RSS {info['cold_start_rss_mib']:.0f} MiB", flush=True)
    return info, [row]


_COLD_START = """
import json, re, sys, time
t0 = time.perf_counter()
import numpy as np
from rag.encoders.multivector import FixedDimensionalEncoder
from rag.search import visual_query
from rag.store import PageFilter
from rag.store.edge import EdgeStore
from rag.encoders import page_vector_specs
t1 = time.perf_counter()
tokens = np.load(sys.argv[2])
store = EdgeStore(sys.argv[1])
store.ensure_schema(page_vector_specs(tokens.shape[1]))
t2 = time.perf_counter()
store.search(visual_query(tokens, FixedDimensionalEncoder(tokens.shape[1]), int(sys.argv[3]), store.count_pages()), PageFilter())
t3 = time.perf_counter()
print(json.dumps({"imports_s": t1 - t0, "open_s": t2 - t1, "first_query_s": t3 - t2,
                  # VmHWM, not ru_maxrss: that one keeps the parent's resident size from before exec
                  "peak_rss_mib": int(re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read())[1]) / 1024}))
"""


def cold_start(path: Path, tokens: np.ndarray) -> dict:
    """A fresh process: Python start, imports, opening the shard, one visual query (what a restarted server does)."""
    import subprocess

    query_file = path.parent / "cold_start_query.npy"
    np.save(query_file, tokens)
    t0 = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", _COLD_START, str(path), str(query_file), str(PRODUCTION_LIMIT)],
        capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parents[1],
    )
    stages = json.loads(done.stdout.strip().splitlines()[-1])
    return {"cold_start_s": time.perf_counter() - t0, "cold_start_rss_mib": stages.pop("peak_rss_mib")} | {
        f"cold_start_{name}": value for name, value in stages.items()
    }


def measure_local_mode(path: Path, corpus: Corpus, n_pages: int, queries: list[QueryVectors], truth: np.ndarray) -> list[dict]:
    """qdrant-client's local mode (the server API in-process): exact MaxSim and mean 400 -> full."""
    from qdrant_client import QdrantClient, models

    shutil.rmtree(path, ignore_errors=True)
    client = QdrantClient(path=str(path))
    client.create_collection(
        "pages",
        vectors_config={
            "full": models.VectorParams(
                size=DIM,
                distance=models.Distance.COSINE,
                multivector_config=models.MultiVectorConfig(comparator=models.MultiVectorComparator.MAX_SIM),
                datatype=models.Datatype.FLOAT16,
            ),
            "mean": models.VectorParams(size=DIM, distance=models.Distance.COSINE),
        },
    )
    t0 = time.perf_counter()
    for s in range(0, n_pages, UPSERT_BATCH):
        client.upsert(
            "pages",
            [
                models.PointStruct(
                    id=i,
                    vector={"full": corpus.pages[i].full.astype(np.float32).tolist(), "mean": corpus.pages[i].mean.tolist()},
                    payload={"page": i},
                )
                for i in range(s, min(n_pages, s + UPSERT_BATCH))
            ],
        )
    upsert_s = time.perf_counter() - t0
    client.close()
    t0 = time.perf_counter()
    client = QdrantClient(path=str(path))
    reopen = time.perf_counter() - t0
    rows = []
    for name, prefetch in (("local mode: exact MaxSim", None), ("local mode: mean 400 -> full", 400)):
        latencies, recalls = [], []
        for qi, query in enumerate(queries):
            t = time.perf_counter()
            hits = client.query_points(
                "pages",
                query=query.tokens.tolist(),
                using="full",
                prefetch=models.Prefetch(query=query.mean.tolist(), using="mean", limit=prefetch) if prefetch else None,
                limit=TOP_K,
            ).points
            latencies.append(time.perf_counter() - t)
            expected = set(np.argsort(-truth[qi])[:TOP_K].tolist())
            recalls.append(len({int(h.id) for h in hits} & expected) / TOP_K)
        rows.append(
            {
                "strategy": name,
                "shard": "qdrant-client local",
                "queries": len(queries),
                "p50_ms": 1000 * statistics.median(latencies),
                "p95_ms": 1000 * percentile(latencies, 95),
                "recall_at_10": float(np.mean(recalls)),
                "upsert_pages_per_s": n_pages / upsert_s,
                "reopen_s": reopen,
                "shard_bytes_per_page": disk_bytes(path)[0] / n_pages,
            }
        )
        print(f"  {name:45s} p50 {rows[-1]['p50_ms']:8.1f} ms  R@10 {rows[-1]['recall_at_10']:.3f}", flush=True)
    client.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, nargs="+", default=[2000, 10000, 20000])
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--exact-queries", type=int, default=10, help="queries for the full-scan strategies")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="passes over the queries (full scans: one)")
    parser.add_argument("--strategies", nargs="*", help="substrings of strategy names to run (default: all)")
    parser.add_argument("--shards", nargs="*", default=["f16", "pool3", "t8", "production"])
    parser.add_argument("--local-mode-pages", type=int, default=2000, help="0 skips qdrant-client local mode")
    parser.add_argument("--workdir", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "retrieval_scale")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("retrieval_scale.json"))
    args = parser.parse_args()

    sizes = sorted(args.pages)
    strategies = [
        s for s in STRATEGIES
        if s.shard in args.shards and (not args.strategies or any(x in s.name for x in args.strategies))
    ]
    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)
    world, fde = World.make(args.seed), sweep_fde(args.seed)
    layouts = {name: layout for name, layout in shard_layouts(fde.dim).items() if name in args.shards}
    report: dict = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "qdrant_edge": _version("qdrant-edge-py"),
                    "qdrant_client": _version("qdrant-client"), "numpy": np.__version__},
        "args": {k: str(v) for k, v in vars(args).items()},
        "fde_dim": fde.dim,
        "sizes": [],
    }
    corpus = Corpus()
    queries: list[QueryVectors] = []
    truth = np.zeros((args.queries, 0), dtype=np.float32)
    previous = 0
    for n_pages in sizes:
        print(f"== {n_pages} pages", flush=True)
        grow_corpus(corpus, n_pages, args.seed, args.workers, tuple(args.shards))
        if not queries:
            rng = np.random.default_rng([args.seed, 9])
            query_pages = rng.choice(min(QUERY_PAGES_FROM, n_pages), size=args.queries, replace=False)
            for qi, page in enumerate(query_pages):
                tokens = make_query(world, args.seed, qi, corpus.pages[page].full.astype(np.float32))
                queries.append(QueryVectors(tokens, mean_vector(tokens), fde.query(tokens)))
        t0 = time.perf_counter()
        truth = np.concatenate([truth, exact_scores(corpus.pages[previous:n_pages], queries)], axis=1)
        truth_s = time.perf_counter() - t0
        size_report = {
            "pages": n_pages,
            "tokens_per_page": float(np.mean([len(p.full) for p in corpus.pages[previous:n_pages]])),
            "pool3_tokens_per_page": float(np.mean([len(p.pool3) for p in corpus.pages[previous:n_pages]])) if "pool3" in args.shards else None,
            "generation_s_total": corpus.gen_seconds,
            "prefetch_vectors_prep_ms_per_page": 1000 * corpus.prep_seconds / n_pages,
            "numpy_exact_truth_s": truth_s,
            "shards": {},
            "rows": [],
        }
        for shard_name, layout in layouts.items():
            path = args.workdir / shard_name
            upsert_s = upsert_new(path, layout, corpus, previous, n_pages)
            print(f" shard {shard_name}: upserted {n_pages - previous} pages in {upsert_s:.1f} s", flush=True)
            info, rows = measure_shard(
                path, layout, [s for s in strategies if s.shard == shard_name], queries, truth, args.exact_queries,
                args.warmup, args.rounds,
            )
            info["upsert_pages_per_s"] = (n_pages - previous) / upsert_s
            for row in rows:
                row.update(upsert_pages_per_s=info["upsert_pages_per_s"], reopen_s=info["reopen_s"],
                           rss_growth_mib=info["rss_growth_mib"])
            size_report["shards"][shard_name] = info
            size_report["rows"] += rows
        if "production" in args.shards:
            path = args.workdir / "production"
            upsert_s = upsert_production(path, corpus, previous, n_pages)
            print(f" shard production: upserted {n_pages - previous} pages in {upsert_s:.1f} s", flush=True)
            info, rows = measure_production(path, queries, truth, args.warmup, args.rounds)
            info["upsert_pages_per_s"] = (n_pages - previous) / upsert_s
            for row in rows:
                row.update(upsert_pages_per_s=info["upsert_pages_per_s"], reopen_s=info["reopen_s"],
                           rss_growth_mib=info["rss_growth_mib"])
            size_report["shards"]["production"] = info
            size_report["rows"] += rows
        if n_pages <= args.local_mode_pages:
            size_report["rows"] += measure_local_mode(
                args.workdir / "local", corpus, n_pages, queries[: args.exact_queries * 2], truth
            )
        report["sizes"].append(size_report)
        args.out.write_text(json.dumps(report, indent=1))
        if n_pages >= args.local_mode_pages:  # later steps need only their own pages: 100 000 would not fit in RAM
            corpus.pages[previous:n_pages] = [None] * (n_pages - previous)
        previous = n_pages
    print(f"wrote {args.out}")


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "-"


if __name__ == "__main__":
    main()
