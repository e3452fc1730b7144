#!/usr/bin/env bash
# Every GPU measurement issue 23 still needs, in one call, for a GPU machine lent for minutes
# (it has torch but neither Snakemake nor a network; run from the repository root):
#
#     bash bench/gpu_session.sh DATA_ROOT [PROCESSES] [RUNS_PER_PROCESS...]
#
# DATA_ROOT holds MNIST/raw/*.gz. For each RUNS_PER_PROCESS N (default: 1 5 10, divisors of the
# paper's 10 repetitions, so that every process gets N runs of one configuration) it trains the
# first PROCESSES x N runs of the paper's plan with bench/gpu_sweep.py, PROCESSES processes at
# once (default: one per CPU core, gpu_sweep's own default): every setting keeps the same number
# of processes busy from start to end, so their rates compare. Each setting goes into a fresh
# runs folder and keeps its report: runs per minute, in-run and start-up time per run
# (docs/benchmarks.md, "GPU"). The best setting's rate gives the GPU profiles' runs_per_job and
# the paper's 630 runs' time. Reports go to $OUT (default gpu-session/), the runs to a scratch
# folder that is removed. Each setting is stopped after SETTING_TIMEOUT seconds (default 150),
# so that a short loan still returns the others.
# DEVICE (default cuda) and MAX_STEPS (default: full runs) are for trying it on a CPU.
set -u
if [ $# -lt 1 ] || [ ! -d "$1/MNIST/raw" ]; then
    echo "usage: bash bench/gpu_session.sh DATA_ROOT [PROCESSES] [RUNS_PER_PROCESS...], DATA_ROOT holding MNIST/raw/*.gz" >&2
    exit 2
fi
DATA_ROOT=$1
PYTHON=${PYTHON:-python3}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
# gpu_sweep's own default --parallel: the CPU cores it may use (a CPU quota counted)
PROCESSES=${2:-$("$PYTHON" -c 'import sys; sys.path.insert(0, "bench"); import gpu_sweep
print(gpu_sweep.default_parallel())')}
shift $(( $# < 2 ? $# : 2 ))
SETTINGS=${*:-1 5 10}
for number in $PROCESSES $SETTINGS; do
    case $number in
        ''|*[!0-9]*|0*) echo "bash bench/gpu_session.sh: '$number' is not a positive whole number: PROCESSES and RUNS_PER_PROCESS are counts" >&2
                        exit 2 ;;
    esac
done
OUT=${OUT:-gpu-session}
mkdir -p "$OUT"
SCRATCH=$(mktemp -d)
trap 'rm -rf "$SCRATCH"' EXIT

{ nvidia-smi || true; } > "$OUT/nvidia-smi.txt" 2>&1
"$PYTHON" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda,
"device", torch.cuda.get_device_name() if torch.cuda.is_available() else "none")' \
    > "$OUT/torch.txt" 2>&1
status=0
for n in $SETTINGS; do
    timeout "${SETTING_TIMEOUT:-150}" "$PYTHON" bench/gpu_sweep.py --device "${DEVICE:-cuda}" \
        --data-root "$DATA_ROOT" --limit $(( PROCESSES * n )) --parallel "$PROCESSES" \
        --runs-per-process "$n" \
        ${MAX_STEPS:+--max-steps "$MAX_STEPS"} --out "$SCRATCH/runs-$n" \
        --json "$OUT/sweep-runs-per-process-$n.json" > "$OUT/sweep-runs-per-process-$n.txt" 2>&1
    code=$?
    echo "runs per process $n: exit $code" | tee -a "$OUT/summary.txt"
    [ $code -eq 0 ] || status=1
done
exit $status
