#!/usr/bin/env bash
# Sets up a separate virtual environment with Open WebUI (the chat front end), used by the integration
# test that runs Open WebUI's backend against pathorag's OpenAI-compatible API (tests/test_open_webui.py,
# fixture `open_webui_python`).
#
# usage: scripts/setup_open_webui.sh [VENV_DIR]
#   VENV_DIR defaults to ${PATHORAG_OPEN_WEBUI_VENV:-$HOME/.cache/pathorag/open-webui-venv} (outside the
#   checkout). Prints the venv's python path on the last line; point PATHORAG_OPEN_WEBUI_PYTHON at it when
#   VENV_DIR is not the default.
#
# Open WebUI pins its own FastAPI, pydantic, transformers and sentence-transformers, so it cannot share
# the project's venv. torch is installed first, pinned to the CPU build that lies on this disk, so that
# sentence-transformers does not pull PyPI's CUDA build (gigabytes of NVIDIA libraries) instead.
# Idempotent: a venv that already imports open_webui and carries the ready marker is left as it is; the
# marker is written last, so an install that was cut short (CI's `timeout`) is finished by the next run
# and never taken for a working one.
set -euo pipefail

VENV=${1:-${PATHORAG_OPEN_WEBUI_VENV:-$HOME/.cache/pathorag/open-webui-venv}}
VENV=$(realpath -m "$VENV")  # a relative VENV_DIR means the caller's directory
PYTHON=${PYTHON:-python3}
OPEN_WEBUI_SPEC=${OPEN_WEBUI_SPEC:-open-webui==0.12.4}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
PY="$VENV/bin/python"
READY="$VENV/pathorag-ready"  # tests/test_open_webui.py skips unless it is there

works() {  # (open_webui.env itself refuses to import without WEBUI_SECRET_KEY, so only the package)
  [ -x "$PY" ] && [ -f "$READY" ] && "$PY" -c "import open_webui, importlib.metadata as m; m.version('open-webui')" >/dev/null 2>&1
}

mkdir -p "$(dirname "$VENV")"
exec 9>"$VENV.lock"
flock 9  # two concurrent runs (two checkouts, CI + a developer) must not pip into the same venv

if works; then
  echo "Open WebUI venv already works: $VENV" >&2
  echo "$PY"
  exit 0
fi

start=$(date +%s)
[ -x "$PY" ] || "$PYTHON" -m venv "$VENV"
"$PY" -m pip install -q --upgrade pip
"$PY" -m pip install -q "$TORCH_SPEC"
"$PY" -m pip install -q "$TORCH_SPEC" "$OPEN_WEBUI_SPEC"

if ! "$PY" -c "import open_webui, importlib.metadata as m; m.version('open-webui')" >/dev/null 2>&1; then
  echo "error: $VENV was set up but 'import open_webui' still fails:" >&2
  "$PY" -c "import open_webui" >&2 || true
  exit 1
fi
touch "$READY"
version=$("$PY" -c 'import importlib.metadata as m; print(m.version("open-webui"))')
echo "Open WebUI venv ready in $(( $(date +%s) - start )) s: $VENV (open-webui $version)" >&2
echo "$PY"
