#!/usr/bin/env bash
# Installs what the SLURM tests need, only when it is missing (safe to run again):
#   - Debian's slurm-wlm and munge (slurmctld, slurmd, the clients, munged; started by hand
#     by tests/slurm_cluster.py, never as services),
#   - the Snakemake SLURM executor plugin (the `slurm` extra of pyproject.toml).
# Needs root (or sudo) and apt for the packages; prints what it does.
set -euo pipefail

have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }

missing=0
for prog in slurmctld slurmd sbatch squeue sinfo scancel scontrol munged mungekey; do
    have "$prog" || { echo "install-slurm: $prog is missing"; missing=1; }
done

if [ "$missing" = 1 ]; then
    SUDO=""
    if [ "$(id -u)" != 0 ]; then
        if command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; else
            echo "install-slurm: not root and no sudo: install slurm-wlm and munge by hand" >&2
            exit 1
        fi
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "install-slurm: no apt-get here: install slurm-wlm and munge by hand" >&2
        exit 1
    fi
    echo "install-slurm: apt-get install slurm-wlm munge"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
        slurm-wlm munge
else
    echo "install-slurm: slurm-wlm and munge are installed"
fi

PYTHON="${PYTHON:-python}"
if ! "$PYTHON" -c "import snakemake_executor_plugin_slurm" >/dev/null 2>&1; then
    echo "install-slurm: pip install snakemake-executor-plugin-slurm"
    "$PYTHON" -m pip install -q "snakemake-executor-plugin-slurm>=2.0"
else
    echo "install-slurm: snakemake-executor-plugin-slurm is installed"
fi
