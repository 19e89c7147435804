#!/usr/bin/env bash
# The checks that need an NVIDIA GPU, in one run of about 5-8 minutes (docs/deep.md, "Scale";
# docs/geometries.md, "Performance"). Run from the repository root on a machine with CUDA,
# PyTorch and Triton (torchvision for the ResNet-18 epoch benchmark); syngeo is used from src/,
# so nothing is installed. Results go to $OUT (default ./gpu-check):
#
#   env.txt        GPU, driver, torch and triton versions
#   tests.txt      the CUDA tests: Triton kernel against the float64 reference (all potentials,
#                  momentum, nesterov, weight decay in every space, maximize, GradScaler,
#                  bf16/fp16 weights, unaligned tensors), fused=True under GradScaler and
#                  autocast, the finetuning protocol with mixed precision, inference reducing
#                  CUDA tensors on the GPU, the solvers on CUDA
#   optim.txt      one step on ResNet-50's parameter list against SGD(fused=True) (target 1.2x)
#   finetune.txt   time per ResNet-18 epoch (224x224, batch 256, AMP) against SGD
#
# Exit status: that of the tests (benchmarks never fail the run).
set -uo pipefail
OUT=${OUT:-gpu-check}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
unset TRITON_INTERPRET

{
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1
    "$PY" -c 'import torch, triton; print("torch", torch.__version__, "| triton", triton.__version__,
"| cuda", torch.version.cuda, "|", torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU")'
} 2>&1 | tee "$OUT/env.txt"

timeout 360 "$PY" -m pytest -q -p no:cacheprovider -rs \
    tests/test_kernels.py tests/test_finetune.py tests/test_inference_scale.py tests/test_solvers.py \
    -k "cuda or gpu or triton or mixed_precision" 2>&1 | tee "$OUT/tests.txt"
status=${PIPESTATUS[0]}

timeout 150 "$PY" benchmarks/bench_optim.py --device cuda --threads 1 --rounds 7 --budget 60 \
    2>&1 | tee "$OUT/optim.txt"
timeout 150 "$PY" benchmarks/bench_finetune.py --device cuda --eager 2>&1 | tee "$OUT/finetune.txt"
exit "$status"
