#!/usr/bin/env bash
# Idempotent set-up: Debian packages (ffmpeg; chromium for the browser test; espeak-ng for the speech clips) where we may
# install them, then .venv with torch 2.13.0 (CPU wheel) first and the pinned requirements.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v ffmpeg >/dev/null && command -v ffprobe >/dev/null || need_apt+=(ffmpeg)
command -v chromium >/dev/null || need_apt+=(chromium)
command -v espeak-ng >/dev/null || need_apt+=(espeak-ng)  # speech clips of the labeler tests and bench/labels.py
if ((${#need_apt[@]})); then
  if [ "$(id -u)" = 0 ]; then sudo=""; elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo="sudo"; else sudo="none"; fi
  if [ "$sudo" != none ] && command -v apt-get >/dev/null; then
    echo "setup: installing ${need_apt[*]} with apt-get"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  else
    echo "setup: please install ${need_apt[*]} (Debian: apt-get install ${need_apt[*]})" >&2
  fi
fi

stamp=.venv/.installed-$(cat requirements.txt requirements-dev.txt | sha256sum | cut -c1-16)
if [ -f "$stamp" ]; then exit 0; fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# torch first: 2.13.0 has a CPU wheel on these machines; any other version pulls CUDA.
.venv/bin/python -m pip show torch 2>/dev/null | grep -q '^Version: 2.13.0' || .venv/bin/python -m pip install -q torch==2.13.0
.venv/bin/python -m pip install -q -r requirements.txt -r requirements-dev.txt
rm -f .venv/.installed-*
touch "$stamp"
echo "setup: .venv ready"
