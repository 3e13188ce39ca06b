#!/usr/bin/env bash
# The GPU checks of one lent-device session (issue 16), as one command: what the tests and benchmarks need that
# only an NVIDIA GPU has. Run from the repository root on the device machine, with the wheels of omegaconf and
# antlr4-python3-runtime carried in .whl/ (see docs/kernels.md, "Running the GPU checks"):
#
#     bash scripts/gpu_check.sh            # everything, about 10 minutes on an H200
#     QUICK=1 bash scripts/gpu_check.sh    # a smoke run of every step
#
# Every step writes its log under $OUT (default gpu-results/) and one line "step rc seconds" to summary.txt;
# a failing step does not stop the ones after it. At most eight files come back from a device run: summary.txt,
# tests.log, kernels.json, train.json, engine.json, decode.json, all.log.
set -u
OUT=${OUT:-gpu-results}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH="/tmp/site:$PWD" || exit 1
else
  export PYTHONPATH="$PWD"
fi
QUICK=${QUICK:-}

step() {  # step NAME TIMEOUT_S COMMAND…
  local name=$1 limit=$2 start=$SECONDS
  shift 2
  echo "== $name: $*" | tee -a "$OUT/all.log"
  timeout "$limit" "$@" >>"$OUT/all.log" 2>&1
  local rc=$?
  echo "$name rc=$rc $((SECONDS - start))s" | tee -a "$OUT/summary.txt"
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >>"$OUT/summary.txt" 2>&1
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" >>"$OUT/summary.txt"

# 1. the GPU tests: kernels against their references natively and compiled, the model on both kernel backends,
#    the engine's Triton paged decode and CUDA graphs
step tests 240 python3 -m pytest -q -p no:cacheprovider -m gpu -x --junit-xml="$OUT/tests.xml" \
  tests/kernels tests/nn tests/engine tests/generation tests/training
cp "$OUT/all.log" "$OUT/tests.log" 2>/dev/null

# 2. the kernels against torch eager and torch.compile: time, GB/s, % of the copy bandwidth
if [ -n "$QUICK" ]; then
  step kernels 120 python3 scripts/bench_kernels.py --quick --skip-train --json "$OUT/kernels.json"
else
  step kernels 180 python3 scripts/bench_kernels.py --rows 4096 --hidden 1024 2048 4096 8192 --skip-train \
    --json "$OUT/kernels.json"
fi

# 3. training throughput: bf16 + compile, Triton kernels against torch's ops
step train 300 python3 scripts/bench_gpu_train.py --seconds "${QUICK:+5}${QUICK:-30}" --json "$OUT/train.json"

# 4. decoding: the engine's mixed workload, batch 1, and batch 64 / 256 with and without CUDA graphs
step engine 240 python3 scripts/bench_engine.py --device cuda --repeats 1 ${QUICK:+--quick} --json "$OUT/engine.json"
step decode 120 python3 scripts/bench_generate.py --device cuda --batch-sizes 1,8 --repeats 3 --json "$OUT/decode.json"

cat "$OUT/summary.txt"
