#!/usr/bin/env bash
# Calls on a lent GPU machine (no network there): the GPU tests and the full-scale benchmarks, results under
# $OUT. diffusers is not installed there, so its wheel travels in .whl (see BENCHMARKS.md). Several steps can
# be given at once; each is limited so that a cut-short call keeps what it measured (JSON after every mode).
#   bash benchmarks/run_on_gpu.sh tests full-544x960x129
#   bash benchmarks/run_on_gpu.sh full15-720p levers-480x848x61 fp8-320x192x17
set -uo pipefail
STEPS=("$@")
[ ${#STEPS[@]} -eq 0 ] && STEPS=(tests)
for step in "${STEPS[@]}"; do
    case "$step" in
    tests | full-544x960x129 | full-480x848x61 | full15-720p | levers-480x848x61 | fp8-320x192x17 | profile) ;;
    *) echo "unknown step '$step': tests, full-544x960x129, full-480x848x61, full15-720p, levers-480x848x61," \
            "fp8-320x192x17, profile" >&2; exit 2 ;;
    esac
done
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || exit 1
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1
OUT="${OUT:-/tmp/out}"
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version,pcie.link.gen.current,pcie.link.width.current \
    --format=csv > "$OUT/gpu.csv"
python3 -c "import torch, diffusers, transformers; print(torch.__version__, diffusers.__version__, transformers.__version__)" \
    > "$OUT/versions.txt"
bench() {  # name, seconds, arguments...
    local name=$1 limit=$2
    shift 2
    timeout "$limit" python3 -m benchmarks.offload_benchmark --json "$OUT/$name.json" "$@" 2>&1 | grep -v "it/s]" \
        | tee "$OUT/$name.log" | tail -25
}

for step in "${STEPS[@]}"; do
    case "$step" in
    tests)
        timeout 300 python3 -m pytest tests/test_gpu.py tests/test_presets.py -v -rs -p no:cacheprovider 2>&1 \
            | tee "$OUT/gpu_tests.log" | tail -40
        ;;
    full-544x960x129)
        bench full_544x960x129 330 --scale full --width 960 --height 544 --frames 129 --steps 3 --skip-decode \
            --modes none balanced lowest_vram
        ;;
    full-480x848x61)
        bench full_480x848x61 330 --scale full --width 848 --height 480 --frames 61 --steps 3 --skip-decode \
            --modes none balanced lowest_vram low_system_ram "cfg two-pass, lowest_vram" "cfg batched, lowest_vram"
        ;;
    full15-720p)
        bench full15_720x1280x121 330 --model hunyuan-video-1.5 --scale full --width 1280 --height 720 \
            --frames 121 --steps 3 --skip-decode --modes none balanced lowest_vram
        ;;
    levers-480x848x61)
        bench levers_480x848x61 400 --scale full --width 848 --height 480 --frames 61 --steps 8 --warmup 1 \
            --skip-decode --modes balanced "first_block 0.05, balanced" "first_block 0.1, balanced" \
            "mag calibrate, balanced" "mag 0.06, balanced" "taylorseer 3, balanced" \
            "attention _native_cudnn, balanced" "attention flex, balanced" "fp8, balanced"
        ;;
    fp8-320x192x17)
        bench fp8_320x192x17 240 --scale full --width 320 --height 192 --frames 17 --steps 4 --skip-decode \
            --modes none balanced "fp8, balanced" "fp8, none"
        ;;
    profile)
        timeout 300 python3 -m benchmarks.profile_offload --scale full --width 848 --height 480 --frames 61 \
            --presets none balanced lowest_vram --out /tmp/profile 2>&1 | tee "$OUT/profile.log" | tail -10
        cp /tmp/profile/profile.json "$OUT/profile.json"
        ;;
    esac
done
