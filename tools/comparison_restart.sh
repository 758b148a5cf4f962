#!/usr/bin/env bash
# Go on with the long comparison on this machine, bare or not, in one command from the repository root:
#   bash tools/comparison_restart.sh DIR ["NOTE"]
# DIR is a folder outside the repository (run folders in DIR/runs, the frozen code in DIR/code-COMMIT, the watcher's log
# in DIR/watch.log); NOTE is the load the runs train under, recorded in each run's summary. It
# 1. takes the commit the runs train with from the manifest (crvae/assets/protocol/manifest.csv) and archives it into
#    DIR/code-COMMIT unless it is there,
# 2. builds the 30k training faces with that frozen code under $CRVAE_DATA (or the user's cache) unless they are there,
#    and stops if their sha256 differs from the one the runs trained on (FACES_SHA256 below),
# 3. starts `tools/comparison.py watch` in the background (nohup, nice), unless one is running already: it resumes every
#    run with a folder in DIR/runs and starts the others in the plan's order, two at a time.
# The project's virtual environment must exist (the README's install command).
set -euo pipefail
cd "$(dirname "$0")/.."
FACES_SHA256=eaba7ccd60c7f6df9f1d97408c6d070db93d02975bcc242a0a6e2a5129d4c6e3   # images.npy of the 30k faces (seed 0, 64 px)
dir=$(realpath -m "${1:?usage: bash tools/comparison_restart.sh DIR [NOTE]   (DIR outside the repository)}")
note=${2:-"loaded: two trainings on 2 cores"}
case "$dir/" in "$PWD"/*) echo "error: DIR must be outside the repository (the run folders are large): $dir" >&2; exit 2;; esac
[ -x .venv/bin/python ] || { echo "error: no .venv here: run the README's install command first" >&2; exit 2; }
. .venv/bin/activate
if pgrep -f "tools/comparison.py watch" > /dev/null; then echo "a watcher is running already: $(pgrep -af 'tools/comparison.py watch' | head -1)"; exit 0; fi
commit=$(python -c "import csv, collections; c = collections.Counter(r['code_commit'] for r in csv.DictReader(open('crvae/assets/protocol/manifest.csv')) if r['code_commit']); print(c.most_common(1)[0][0])")
code="$dir/code-$commit"
if [ ! -f "$code/pyproject.toml" ]; then mkdir -p "$code" && git archive "$commit" | tar -x -C "$code"; echo "froze $commit in $code"; fi
data=${CRVAE_DATA:-$(python -c "from crvae.core import data_home; print(data_home())")}
faces=$(ls "$data"/avatars/avatars-64px-n30000-seed0-*/images.npy 2>/dev/null | head -1 || true)
if [ -z "$faces" ]; then
  (cd "$code" && CRVAE_DATA="$data" PYTHONPATH="$code" python -m crvae data avatars --n 30000 --size 64 --seed 0 | tail -1)
  faces=$(ls "$data"/avatars/avatars-64px-n30000-seed0-*/images.npy | head -1)
fi
got=$(sha256sum "$faces" | cut -d' ' -f1)
[ "$got" = "$FACES_SHA256" ] || { echo "error: $faces has sha256 $got, not the runs' $FACES_SHA256: rebuild it" >&2; exit 2; }
mkdir -p "$dir/runs"
CRVAE_DATA="$data" nohup nice -n 10 python tools/comparison.py watch --runs "$dir/runs" --code "$code" --commit "$commit" \
  --jobs 2 --every 60 --note "$note" >> "$dir/watch.log" 2>&1 &
sleep 5; tail -n 5 "$dir/watch.log"
echo "watching: runs in $dir/runs, log $dir/watch.log; stop with: pkill -TERM -f 'tools/comparison.py watch'"
