#!/usr/bin/env bash
# The GPU measurements no CPU can make, as one call of a few minutes on a lent GPU machine (docs/performance.md):
#   1. the headline: gen1 against diffusers' AnimateDiff video-to-video (eager and compiled), 16 frames 512x512,
#      25 steps, CFG, fp16, depth timed too (scripts/bench_pipeline.py --anchor --depth);
#   2. the public route against diffusers' AnimateDiff ControlNet video-to-video, same settings
#      (scripts/bench_public_route.py);
#   3. the memory of one Imagic step on the public route, 16 frames 512x512 fp16, with and without gradient
#      checkpointing (scripts/bench_imagic_memory.py; docs/directions.md extrapolates it from the CPU).
# Each step has its own time limit, so one that hangs costs only its share; its output (JSON lines) goes to
# $OUT/<step>.log and its exit status to $OUT/summary.txt. Wheels carried in .whl/ (diffusers, av, decord: the
# machine has no network) are installed first.
#
#   bash scripts/gpu_session.sh           # on the GPU machine, from the repository root; $OUT is kept
#   bash scripts/gpu_session.sh --tiny    # anywhere: the same steps with tiny models, to check the script
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-session-out}
mkdir -p "$OUT"
export PYTHONPATH=$PWD
if compgen -G ".whl/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD \
        || echo "installing .whl/ failed: the steps run without those wheels" | tee -a "$OUT/summary.txt"
fi
PYTHON=${PYTHON:-python3}

if [ "${1:-}" = "--tiny" ]; then
    PIPELINE=(--tiny --steps 2 --frames 4 --res 64x64 --dtype fp32 --depth)
    PUBLIC=(--tiny --frames 4 --res 32 --steps 2 --repeats 1)
    IMAGIC=(--tiny --frames 4 --res 32)
else
    nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
    PIPELINE=(--anchor --depth)
    PUBLIC=(--frames 16 --res 512 --steps 25 --dtype fp16 --repeats 1)
    IMAGIC=(--frames 16 --res 512 --dtype fp16 --json "$OUT/imagic_memory.json")
fi

step() {  # step NAME SECONDS COMMAND...: run it within SECONDS, its output to $OUT/NAME.log
    local name=$1 limit=$2
    shift 2
    local start=$SECONDS
    timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
    echo "$name rc=$? seconds=$((SECONDS - start))" | tee -a "$OUT/summary.txt"
}

step pipeline 240 "$PYTHON" scripts/bench_pipeline.py "${PIPELINE[@]}"
step public_route 150 "$PYTHON" scripts/bench_public_route.py "${PUBLIC[@]}"
step imagic_memory 150 "$PYTHON" scripts/bench_imagic_memory.py "${IMAGIC[@]}"
