#!/usr/bin/env bash
# One call on a lent GPU machine (no network there): the GPU tests and the full-scale benchmarks, results
# under $OUT. diffusers is not installed there, so its wheel travels in .whl (see BENCHMARKS.md).
#   bash benchmarks/run_on_gpu.sh tests              # GPU tests + a mid-scale benchmark
#   bash benchmarks/run_on_gpu.sh full-544x960x129   # the 13B configuration at one size (one call each)
#   bash benchmarks/run_on_gpu.sh full-480x848x61
set -uo pipefail
case "${1:-tests}" in
tests | full-544x960x129 | full-480x848x61) ;;
*) echo "unknown mode '$1': tests, full-544x960x129 or full-480x848x61" >&2; exit 2 ;;
esac
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || exit 1
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1
OUT="${OUT:-/tmp/out}"
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version,pcie.link.gen.current,pcie.link.width.current \
    --format=csv > "$OUT/gpu.csv"
python3 -c "import torch, diffusers, transformers; print(torch.__version__, diffusers.__version__, transformers.__version__)" \
    > "$OUT/versions.txt"

case "${1:-tests}" in
tests)
    python3 -m pytest tests/test_gpu.py tests/test_presets.py -v -rs 2>&1 | tee "$OUT/gpu_tests.log"
    timeout 420 python3 -m benchmarks.offload_benchmark --scale mid --width 848 --height 480 --frames 61 --steps 4 \
        --json "$OUT/mid_480x848x61.json" 2>&1 | tee "$OUT/mid_480x848x61.log"
    ;;
full-544x960x129)
    timeout 570 python3 -m benchmarks.offload_benchmark --scale full --width 960 --height 544 --frames 129 --steps 3 \
        --skip-decode --modes none balanced lowest_vram "diffusers enable_model_cpu_offload" \
        --json "$OUT/full_544x960x129.json" 2>&1 | tee "$OUT/full_544x960x129.log"
    ;;
full-480x848x61)
    timeout 570 python3 -m benchmarks.offload_benchmark --scale full --width 848 --height 480 --frames 61 --steps 3 \
        --skip-decode --modes none balanced lowest_vram low_system_ram "cfg two-pass, lowest_vram" \
        "cfg batched, lowest_vram" --json "$OUT/full_480x848x61.json" 2>&1 | tee "$OUT/full_480x848x61.log"
    ;;
esac
