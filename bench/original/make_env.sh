#!/usr/bin/env bash
# Create the virtualenv in which the authors' original code runs, with their own pins
# (bench/original/requirements.txt). Separate from the project's environment on purpose: the
# original needs torch-uncertainty, Lightning and wandb, none of which askdagger-mnist uses.
#
#   bash bench/original/make_env.sh [VENV]        (default: ~/.cache/askdagger-mnist/original-venv)
#
# Needs the package index (torch 2.9.0 from PyPI is a CUDA build of a few GB; it runs on the CPU).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${1:-${XDG_CACHE_HOME:-$HOME/.cache}/askdagger-mnist/original-venv}"
python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install -r "$here/requirements.txt"
"$venv/bin/python" -m pip freeze > "$venv/freeze.txt"
echo "original environment ready: $venv (its full freeze in $venv/freeze.txt)"
