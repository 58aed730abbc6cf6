"""An HNSW graph on the FDE vector against the shipped flat FDE scan (issue #16), on qdrant-edge.

The shipped visual chain scans every page's FDE (`page_fde`, 4 096-d turbo8, dot product), takes the
best 1 000 or more, narrows them by centroid MaxSim and reranks by exact MaxSim
(`rag.search.visual_query`). Here the same synthetic ColQwen-shaped pages (benchmarks/retrieval_scale_data.py)
go into one shard through `rag.store.EdgeStore`, as retrieval_scale.py's `production` shard does;
a copy of it is reopened with an HNSW graph on `page_fde` only (every other vector keeps `m=0`)
and optimised, which builds the graph and makes the segments immutable. Then, alternated query by
query on the same queries: the shipped chain on the shipped shard, and the chain on the HNSW copy at
several `hnsw_ef` for the FDE stage (the graph must return at least as many candidates as the stage
asks for, so ef starts at that limit); and the FDE stage alone both ways, to show its share. Pages are
made and stored 10 000 at a time (100 000 pages of tokens would not fit in RAM). Reported: graph
build seconds, disk and resident memory, open time, p50/p95 and recall@10 against exact MaxSim over
every page.

    MALLOC_MMAP_THRESHOLD_=131072 .venv/bin/python benchmarks/fde_hnsw.py --pages 20000 --queries 30 --out fde_hnsw.json
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import rag  # noqa: E402,F401  (the project's import order: rag before transformers)
import qdrant_edge as qe  # noqa: E402

from benchmarks import retrieval_scale as scale  # noqa: E402
from benchmarks.retrieval_scale_data import DIM, World, make_query, mean_vector  # noqa: E402
from rag.encoders import PAGE_FDE, page_vector_specs  # noqa: E402
from rag.search import visual_query  # noqa: E402
from rag.store import ChannelQuery, PageFilter  # noqa: E402
from rag.store.edge import EdgeStore, _edge_config, _nearest  # noqa: E402

HNSW = qe.HnswIndexConfig(m=16, ef_construct=128, full_scan_threshold=1000)


def hnsw_config() -> qe.EdgeConfig:
    """The shipped layout with an HNSW graph on the FDE vector alone."""
    config = _edge_config(page_vector_specs(DIM))
    fde = config.vectors[PAGE_FDE]
    config.vectors[PAGE_FDE] = qe.EdgeVectorParams(size=fde.size, distance=fde.distance, datatype=fde.datatype, hnsw_config=HNSW)
    # Every segment gets its graph (the engine's default skips segments under 10 MB of vectors).
    return qe.EdgeConfig(vectors=config.vectors, optimizers=qe.EdgeOptimizersConfig(indexing_threshold=1))


STEP = 10_000


def request(query: ChannelQuery, fde_ef: int) -> qe.QueryRequest:
    """The chain (or one stage) as EdgeStore sends it, with `hnsw_ef` on its FDE (innermost) stage."""

    def prefetch(stage: ChannelQuery) -> qe.Prefetch:
        params = qe.SearchParams(hnsw_ef=fde_ef) if stage.prefetch is None else None
        inner = [prefetch(stage.prefetch)] if stage.prefetch else None
        return qe.Prefetch(limit=stage.limit, query=_nearest(stage), prefetches=inner, params=params)

    if query.prefetch is None:
        return qe.QueryRequest(limit=query.limit, query=_nearest(query), params=qe.SearchParams(hnsw_ef=fde_ef))
    return qe.QueryRequest(limit=query.limit, query=_nearest(query), prefetches=[prefetch(query.prefetch)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, default=20000)
    parser.add_argument("--queries", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--ef", type=int, nargs="+", default=[1, 2, 4], help="hnsw_ef as multiples of the FDE stage's limit")
    parser.add_argument("--workdir", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "fde_hnsw")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("fde_hnsw.json"))
    args = parser.parse_args()
    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)

    corpus, queries, truth, upsert_s = scale.Corpus(), [], [], 0.0
    flat_path, hnsw_path = args.workdir / "flat", args.workdir / "hnsw"
    world, rng = World.make(0), np.random.default_rng([0, 9])
    for start in range(0, args.pages, STEP):
        end = min(args.pages, start + STEP)
        scale.grow_corpus(corpus, end, 0, args.workers, ("production",))
        if not queries:
            pages = rng.choice(min(scale.QUERY_PAGES_FROM, end), size=args.queries, replace=False)
            for qi, page in enumerate(pages):
                tokens = make_query(world, 0, qi, corpus.pages[page].full.astype(np.float32))
                queries.append(scale.QueryVectors(tokens, mean_vector(tokens), np.zeros(1)))
        truth.append(scale.exact_scores(corpus.pages[start:end], queries))
        upsert_s += scale.upsert_production(flat_path, corpus, start, end)
        corpus.pages[start:end] = [None] * (end - start)
        print(f"{end} pages upserted ({upsert_s:.0f} s so far)", flush=True)
    truth = np.concatenate(truth, axis=1)

    shutil.copytree(flat_path, hnsw_path)
    hnsw_pages = hnsw_path / "pages"  # EdgeStore keeps the pages shard in pages/
    rss0 = scale.rss_mib()
    shard = qe.EdgeShard.load(str(hnsw_pages), hnsw_config())
    started = time.perf_counter()
    shard.optimize()
    build_s = time.perf_counter() - started
    build_rss = scale.rss_mib() - rss0
    shard.close()
    print(f"optimize (HNSW on {PAGE_FDE}): {build_s:.1f} s, RSS +{build_rss:.0f} MiB", flush=True)

    started = time.perf_counter()
    store = EdgeStore(flat_path)
    store.ensure_schema(page_vector_specs(DIM))
    flat_open = time.perf_counter() - started
    started = time.perf_counter()
    hnsw = qe.EdgeShard.load(str(hnsw_pages), hnsw_config())
    hnsw_open = time.perf_counter() - started

    chains = [visual_query(q.tokens, scale.PRODUCTION_FDE, scale.PRODUCTION_LIMIT, args.pages) for q in queries]
    fde_limit = chains[0].prefetch.prefetch.limit

    def flat(query: ChannelQuery) -> list[str]:
        return [h.point_id for h in store.search(query, PageFilter())]

    def graph(query: ChannelQuery, ef: int) -> list[str]:
        return [str(h.id) for h in hnsw.query(request(query, ef))]

    runs = {"chain, flat FDE scan (shipped)": (False, flat)}
    for factor in args.ef:
        runs[f"chain, HNSW ef {factor * fde_limit}"] = (False, lambda query, ef=factor * fde_limit: graph(query, ef))
    runs["FDE stage alone, flat"] = (True, flat)
    runs[f"FDE stage alone, HNSW ef {fde_limit}"] = (True, lambda query: graph(query, fde_limit))
    page_of = {scale._production_point_id(i): i for i in range(args.pages)}
    latencies = {name: [] for name in runs}
    recalls = {name: [] for name in runs}
    for name, (stage_only, run) in runs.items():  # warm-up
        run(chains[0].prefetch.prefetch if stage_only else chains[0])
    for _ in range(args.rounds):
        for qi, chain in enumerate(chains):
            expected = set(np.argsort(-truth[qi])[: scale.TOP_K].tolist())
            for name, (stage_only, run) in runs.items():
                started = time.perf_counter()
                ids = run(chain.prefetch.prefetch if stage_only else chain)
                latencies[name].append(time.perf_counter() - started)
                # the FDE stage alone: how many of the exact top 10 are among its candidates
                found = {page_of[i] for i in (ids if stage_only else ids[: scale.TOP_K])}
                recalls[name].append(len(found & expected) / scale.TOP_K)
    rows = [
        {"run": name, "p50_ms": 1000 * statistics.median(latencies[name]), "p95_ms": 1000 * scale.percentile(latencies[name], 95),
         "recall_at_10": float(np.mean(recalls[name]))}
        for name in runs
    ]
    for row in rows:
        print(f"  {row['run']:36s} p50 {row['p50_ms']:7.1f} ms  p95 {row['p95_ms']:7.1f} ms  R@10 {row['recall_at_10']:.3f}")
    report = {
        "pages": args.pages, "queries": args.queries, "rounds": args.rounds, "fde_stage_limit": fde_limit,
        "upsert_s": upsert_s, "hnsw_build_s": build_s, "hnsw_build_rss_mib": build_rss,
        "open_s": {"flat": flat_open, "hnsw": hnsw_open},
        "disk_bytes": {"flat": scale.disk_bytes(flat_path)[0], "hnsw": scale.disk_bytes(hnsw_path)[0]},
        "rss_mib_after_both": scale.rss_mib(), "hnsw": {"m": 16, "ef_construct": 128}, "rows": rows,
        "load_average": os.getloadavg(),
    }
    store.close()
    hnsw.close()
    args.out.write_text(json.dumps(report, indent=1))
    print(json.dumps({k: v for k, v in report.items() if k != "rows"}, indent=1))


if __name__ == "__main__":
    main()
