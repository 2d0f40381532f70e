#!/usr/bin/env bash
# The GPU measurements of docs/performance.md in one go: bench_pipeline.py at SD-1.5 size (at most 5 minutes: its
# budget stops starting cases at 285 s, the timeout interrupts a running one at 300 s and the table of what was measured
# is still written), then the CUDA-only tests of the pipeline's speed options (at most 120 s more), then the peak memory
# of a restoration with a 7 B LLaVA captioner, resident and with model CPU offload (bench_captioner_offload.py, at most
# 240 s more; captioner_offload.jsonl).
#
# Meant for a machine with a CUDA PyTorch that may lack diffusers: wheels found in .whl/ (docs/performance.md says
# how to fetch them) are installed to /tmp/site first. Writes results.jsonl, results.md, the tiled-output views and
# log.txt (everything printed, tests included) to ${OUT:-results}/bench. Extra arguments go to bench_pipeline.py.
set -uo pipefail
cd "$(dirname "$0")/.."
DEST="${OUT:-results}/bench"
mkdir -p "$DEST"
if compgen -G ".whl/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || exit 1
    export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD/src:${PYTHONPATH:-}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
{
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
    python3 -c "import torch, diffusers, transformers; print(torch.__version__, diffusers.__version__, transformers.__version__)"
    # The budget stops new cases; the timeout (SIGINT: the table of what was measured is still written) bounds a
    # case already running, e.g. a long compile.
    timeout -s INT -k 30 "${BENCH_TIMEOUT:-300}" \
        python3 benchmarks/bench_pipeline.py --size sd15 --output "$DEST/results.jsonl" "$@"
    status=$?
    echo "# bench_pipeline.py exit status $status"
    timeout 120 python3 -m pytest -q -p no:cacheprovider tests/pipelines/test_pipeline_speed.py -m "slow or not slow" -k cuda
    echo "# CUDA tests exit status $?"
    timeout -k 10 "${CAPTIONER_TIMEOUT:-240}" \
        python3 benchmarks/bench_captioner_offload.py --output "$DEST/captioner_offload.jsonl"
    echo "# bench_captioner_offload.py exit status $?"
    exit $status
} 2>&1 | tee "$DEST/log.txt"
exit "${PIPESTATUS[0]}"
