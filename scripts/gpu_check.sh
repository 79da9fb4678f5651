#!/usr/bin/env bash
# On a machine with an NVIDIA GPU and this repo: build for that GPU, run the CUDA tests and
# the CUDA benchmark, and write everything to OUT_DIR. Meant to finish in well under 8 min.
#
#   scripts/gpu_check.sh OUT_DIR
#
# OUT_DIR gets: env.txt (GPU, driver, torch), build.log, tests-attention-cuda.log and
# bench-attention.{md,json,log} (the attention kernels first), tests.log (pass/fail per test),
# bench-cuda.{md,json,png} and bench.log, and summary.txt.
set -uo pipefail
OUT_DIR=${1:?usage: scripts/gpu_check.sh OUT_DIR}
mkdir -p "$OUT_DIR"
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 FORCE_CUDA=1 MAX_JOBS=${MAX_JOBS:-16}
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-$($PY -c "import torch; print('%d.%d' % torch.cuda.get_device_capability())")}
summary() { echo "$*" | tee -a "$OUT_DIR/summary.txt"; }

{ date -u; nvidia-smi; $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"; } \
  > "$OUT_DIR/env.txt" 2>&1
summary "gpu: $($PY -c "import torch; print(torch.cuda.get_device_name())") arch $TORCH_CUDA_ARCH_LIST, torch $($PY -c 'import torch; print(torch.__version__)')"

t0=$(date +%s)
if ! $PY setup.py build_ext --inplace > "$OUT_DIR/build.log" 2>&1; then
  summary "build: FAILED (see build.log)"; tail -40 "$OUT_DIR/build.log"; exit 1
fi
summary "build: ok in $(( $(date +%s) - t0 )) s"

# The attention kernels first (the tensor-core path of cuda/attention_tc.cu has only been run
# in a CPU emulation): the CUDA cases of its tests, then its bfloat16 benchmark, head dim 128
# at sequence 4096 included.
t0=$(date +%s)
timeout 240 $PY -m pytest tests/test_attention.py -q -rA -p no:cacheprovider -k cuda > "$OUT_DIR/tests-attention-cuda.log" 2>&1
summary "attention cuda tests: rc=$? in $(( $(date +%s) - t0 )) s: $(tail -1 "$OUT_DIR/tests-attention-cuda.log")"
grep -E "^(FAILED|ERROR)" "$OUT_DIR/tests-attention-cuda.log" | head -20 | tee -a "$OUT_DIR/summary.txt"
t0=$(date +%s)
timeout 150 $PY -m torch_ops.bench --device cuda --ops scaled_dot_product_attention --cases full-4096-d128,full-4096,causal-4096 \
  --dtype bfloat16 --no-progress --md "$OUT_DIR/bench-attention.md" --json "$OUT_DIR/bench-attention.json" > "$OUT_DIR/bench-attention.log" 2>&1
summary "attention bench (bfloat16): rc=$? in $(( $(date +%s) - t0 )) s"
tail -15 "$OUT_DIR/bench-attention.log"

t0=$(date +%s)
timeout 300 $PY -m pytest tests -q -rA -p no:cacheprovider > "$OUT_DIR/tests.log" 2>&1
summary "tests: rc=$? in $(( $(date +%s) - t0 )) s: $(tail -1 "$OUT_DIR/tests.log")"
grep -E "^(FAILED|ERROR)" "$OUT_DIR/tests.log" | head -20 | tee -a "$OUT_DIR/summary.txt"

t0=$(date +%s)
timeout 200 $PY -m torch_ops.bench --device cuda --dtype float32,bfloat16 --save "$OUT_DIR" > "$OUT_DIR/bench.log" 2>&1
summary "bench: rc=$? in $(( $(date +%s) - t0 )) s"
tail -30 "$OUT_DIR/bench.log"
cat "$OUT_DIR/summary.txt"
