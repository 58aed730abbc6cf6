"""Soak: many clients for minutes against `pathorag serve` whose model is slow, then errors, latency and memory.

`pathorag serve` (a subprocess, as in server_load.py) over the demo atlas, its answering model a scripted
OpenAI-compatible server on loopback (tests/scripted_vlm.py) that answers every call after `--model-delay`
seconds with one reply that parses as a route plan, an inspection and an answer. `--clients` clients
(default 64) send `/v1/ask` questions back to back for `--seconds` (default 300); a client refused with
503 waits the Retry-After it was given. Reported: requests by status (the 503s with Retry-After apart),
latency percentiles of the answered ones, and the server's RSS after warm-up, at the end, at peak and
the peak of each minute (flat, or still growing?).

    .venv/bin/python benchmarks/soak.py --clients 64 --seconds 300 --json soak.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.server_load import API_KEY, QUESTIONS, Server, ask_body, build_index, load_questions  # noqa: E402
from tests.scripted_vlm import ScriptedVLM, Slow  # noqa: E402

# One reply every call accepts: the fields of a route plan, an inspection and an answer at once.
EVERY_REPLY = {
    "retrieval": True,
    "queries": [{"text": "Reed-Sternberg cells"}],
    "summary": "The cited page describes the cells [P1].",
    "relevant": ["P1"],
    "sufficient": True,
    "answer": "As the cited page says [P1].",
    "citations": ["P1"],
    "confidence": 0.6,
}


def rss_bytes(pid: int) -> int:
    """The resident memory of the server and its children."""
    process = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [process, *process.children(recursive=True)])


async def client(base_url: str, items: list[dict], offset: int, until: float, results: list, timeout: float) -> None:
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with httpx.AsyncClient(timeout=timeout) as http:
        n = offset
        while time.monotonic() < until:
            started = time.monotonic()
            try:
                reply = await http.post(base_url + "/v1/ask", headers=headers, json=ask_body(items[n % len(items)]))
                status, retry_after = reply.status_code, reply.headers.get("retry-after")
            except httpx.HTTPError as error:
                status, retry_after = type(error).__name__, None
            results.append((status, time.monotonic() - started, retry_after is not None))
            n += 1
            if status == 503 and retry_after:
                await asyncio.sleep(float(retry_after))


async def soak(base_url: str, items: list[dict], clients: int, seconds: float, timeout: float) -> list:
    results: list = []
    until = time.monotonic() + seconds
    await asyncio.gather(*(client(base_url, items, i, until, results, timeout) for i in range(clients)))
    return results


def summary(results: list, seconds: float) -> dict:
    statuses = Counter(str(status) if not (status == 503 and with_retry) else "503 with Retry-After"
                       for status, _, with_retry in results)
    answered = sorted(latency for status, latency, _ in results if status == 200)

    def pct(q: float) -> int | None:
        return round(1000 * answered[min(len(answered) - 1, int(q * len(answered)))]) if answered else None

    return {
        "requests": len(results),
        "by_status": dict(statuses),
        "errors": sum(n for status, n in statuses.items() if status not in ("200", "503 with Retry-After")),
        "answered_per_s": round(len(answered) / seconds, 2),
        "p50_ms": pct(0.50), "p95_ms": pct(0.95), "p99_ms": pct(0.99),
        "mean_ms": round(1000 * statistics.fmean(answered)) if answered else None,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=300)
    parser.add_argument("--warmup-seconds", type=float, default=20)
    parser.add_argument("--model-delay", type=float, default=0.5, help="Seconds the scripted model takes per call.")
    parser.add_argument("--pdf", type=Path, default=ROOT / "corpora" / "demo_atlas.pdf")
    parser.add_argument("--questions", type=Path, default=QUESTIONS)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    items = load_questions(args.questions)
    model = ScriptedVLM(default=Slow(args.model_delay, EVERY_REPLY))
    with tempfile.TemporaryDirectory(prefix="pathorag-soak-") as tmp:
        data_dir = Path(tmp) / "data"
        build_index(data_dir, args.pdf)
        env = {"PATHORAG_VLM_BASE_URL": model.base_url, "PATHORAG_VLM_MODEL": model.model}
        server = Server(data_dir, env, Path(tmp) / "server.log")
        try:
            asyncio.run(soak(server.base_url, items, args.clients, args.warmup_seconds, args.timeout))
            rss_start = rss_bytes(server.process.pid)
            samples: list[tuple[float, int]] = []  # (seconds into the run, RSS)
            results: list = []

            async def run_and_sample() -> None:
                started = time.monotonic()
                task = asyncio.create_task(soak(server.base_url, items, args.clients, args.seconds, args.timeout))
                while not task.done():
                    samples.append((time.monotonic() - started, rss_bytes(server.process.pid)))
                    await asyncio.sleep(2)
                results.extend(task.result())

            asyncio.run(run_and_sample())
            rss_end = rss_bytes(server.process.pid)
        finally:
            server.stop()
            model.close()
    report = summary(results, args.seconds) | {
        "clients": args.clients, "seconds": args.seconds, "model_delay_s": args.model_delay,
        "rss_mb_after_warmup": round(rss_start / 2**20), "rss_mb_end": round(rss_end / 2**20),
        "rss_mb_peak": round(max(rss for _, rss in samples) / 2**20),
        "rss_mb_per_minute": [round(max(rss for t, rss in samples if minute * 60 <= t < (minute + 1) * 60) / 2**20)
                              for minute in range(int(args.seconds // 60))],
        "python": platform.python_version(), "cpu_count": psutil.cpu_count(),
    }  # fmt: skip
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
