#!/usr/bin/env bash
# Create .venv and install axilla (with its test extras) into it.
# On a machine without an NVIDIA GPU, PyTorch's CPU build is installed first (pinned, so pip
# takes a local wheel where one is provided); the project itself only asks for torch>=2.2,
# so a hospital's own CUDA build is kept. Override the pin with AXILLA_TORCH_SPEC.
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$python" -m venv .venv
# shellcheck disable=SC1091
. .venv/bin/activate
if ! command -v nvidia-smi >/dev/null 2>&1 && ! python -c "import torch" >/dev/null 2>&1; then
  python -m pip install --quiet "${AXILLA_TORCH_SPEC:-torch==2.13.0}"
fi
python -m pip install --quiet -e ".[test]"
# Headless Chromium renders report.html in tests/evaluation/test_html.py (Debian package `chromium`).
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
touch .venv/.installed
