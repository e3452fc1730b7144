#!/usr/bin/env bash
# Every GPU measurement issue 23 still needs, in one call, for a GPU machine lent for minutes
# (it has torch but neither Snakemake nor a network; run from the repository root):
#
#     bash bench/gpu_session.sh DATA_ROOT [LIMIT] [RUNS_PER_PROCESS...]
#
# DATA_ROOT holds MNIST/raw/*.gz. For each RUNS_PER_PROCESS (default: 1 4 10) it trains the first
# LIMIT runs of the paper's plan (default 96) with bench/gpu_sweep.py, each setting into a fresh
# runs folder, one process per CPU core at once, and keeps each setting's report: runs per minute,
# in-run and start-up time per run (docs/benchmarks.md, "GPU"). The best setting's rate gives the
# GPU profiles' runs_per_job and the paper's 630 runs' time. Reports go to $OUT (default
# gpu-session/), the runs to a scratch folder that is removed. Each setting is stopped after
# SETTING_TIMEOUT seconds (default 150), so that a short loan still returns the others.
# DEVICE (default cuda) and MAX_STEPS (default: full runs) are for trying it on a CPU.
set -u
if [ $# -lt 1 ] || [ ! -d "$1/MNIST/raw" ]; then
    echo "usage: bash bench/gpu_session.sh DATA_ROOT [LIMIT] [RUNS_PER_PROCESS...], DATA_ROOT holding MNIST/raw/*.gz" >&2
    exit 2
fi
DATA_ROOT=$1
LIMIT=${2:-96}
shift $(( $# < 2 ? $# : 2 ))
SETTINGS=${*:-1 4 10}
OUT=${OUT:-gpu-session}
mkdir -p "$OUT"
SCRATCH=$(mktemp -d)
trap 'rm -rf "$SCRATCH"' EXIT
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
PYTHON=${PYTHON:-python3}

{ nvidia-smi || true; } > "$OUT/nvidia-smi.txt" 2>&1
"$PYTHON" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda,
"device", torch.cuda.get_device_name() if torch.cuda.is_available() else "none")' \
    > "$OUT/torch.txt" 2>&1
status=0
for n in $SETTINGS; do
    timeout "${SETTING_TIMEOUT:-150}" "$PYTHON" bench/gpu_sweep.py --device "${DEVICE:-cuda}" \
        --data-root "$DATA_ROOT" --limit "$LIMIT" --runs-per-process "$n" \
        ${MAX_STEPS:+--max-steps "$MAX_STEPS"} --out "$SCRATCH/runs-$n" \
        --json "$OUT/sweep-runs-per-process-$n.json" > "$OUT/sweep-runs-per-process-$n.txt" 2>&1
    code=$?
    echo "runs per process $n: exit $code" | tee -a "$OUT/summary.txt"
    [ $code -eq 0 ] || status=1
done
exit $status
