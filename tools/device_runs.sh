#!/usr/bin/env bash
# On a lent GPU machine, from the repository root: train the pending comparison runs that .device/runs.txt names, in
# parallel, and pack what is scored into $OUT/protocol.tar.gz with device-report.json.
#   bash tools/device_runs.sh SECONDS      (the call: carry .device, timeout_s a little over SECONDS)
# `python tools/comparison.py device-prep` writes .device/ here; `unpack` reads the archive that comes back.
# The machine's Python has torch; the wheels in .device/whl add what it lacks. It builds the 30k training faces with the
# frozen code and stops if they differ from the ones the runs trained on (`tools/comparison.py faces`).
set -euo pipefail
until=${1:-540}; t0=$(date +%s)
work=$(mktemp -d)                   # the faces and the run folders: scratch, gone with the machine
out=${OUT:-$work/out}; mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir .device/whl/*.whl
export CRVAE_DATA="$work/data" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
PYTHONPATH="$PWD" python3 tools/comparison.py faces --code .device/code --workers "$(nproc)"   # builds, checks; exit 2: no run
left=$(( until - ($(date +%s) - t0) ))
echo "faces built and checked; $left s left for training and scoring"
CRVAE_PROTOCOL_RESULTS="$out/protocol" PYTHONPATH="$PWD" python3 tools/comparison.py device --runs "$work/runs" --code .device/code \
  --commit "$(cat .device/commit.txt)" --only "$(cat .device/runs.txt)" --until "$left" \
  --note "lent GPU machine ($(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)), $(tr ',' '\n' < .device/runs.txt | wc -l) trainings at once, fp32" "${@:2}"
rm -rf "$out/protocol"              # what comes back: protocol.tar.gz only
ls -la "$out"
