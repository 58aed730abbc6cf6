#!/usr/bin/env bash
# Sets up pathorag on a fresh machine: system OCR engine, a virtual environment in .venv, the package.
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v tesseract >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tesseract-ocr >/dev/null
  else
    echo "warning: Tesseract is not installed; scanned pages will not be OCRed (apt-get install tesseract-ocr)" >&2
  fi
fi

PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# torch first and pinned: an open range can pull a multi-GB build; 2.13 is what colpali-engine accepts.
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[test]"
echo "pathorag installed in .venv (run: .venv/bin/pathorag --help)"
