#!/usr/bin/env bash
# Go on with the long comparison on this machine, bare or not, in one command from the repository root:
#   bash tools/comparison_restart.sh DIR ["NOTE"]
# DIR is a folder outside the repository (run folders in DIR/runs, the frozen code in DIR/code-COMMIT, the watcher's log
# in DIR/watch.log); NOTE is the load the runs train under, recorded in each run's summary. It
# 1. takes the commit the runs train with from the manifest (crvae/assets/protocol/manifest.csv) and archives it into
#    DIR/code-COMMIT unless it is there,
# 2. builds the 30k training faces with that frozen code under $CRVAE_DATA (or the user's cache) unless they are there,
#    and stops if their sha256 differs from the one the runs trained on (`tools/comparison.py faces`),
# 3. starts `tools/comparison.py watch` in the background (nohup, nice), unless one is running already: it resumes every
#    run with a folder in DIR/runs and starts the others in the plan's order, two at a time.
# The project's virtual environment must exist (the README's install command).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=$(realpath -m "${1:?usage: bash tools/comparison_restart.sh DIR [NOTE]   (DIR outside the repository)}")
note=${2:-"loaded: two trainings on 2 cores"}
case "$dir/" in "$PWD"/*) echo "error: DIR must be outside the repository (the run folders are large): $dir" >&2; exit 2;; esac
[ -x .venv/bin/python ] || { echo "error: no .venv here: run the README's install command first" >&2; exit 2; }
. .venv/bin/activate
if pgrep -f "tools/comparison.py watch" > /dev/null; then echo "a watcher is running already: $(pgrep -af 'tools/comparison.py watch' | head -1)"; exit 0; fi
commit=$(python tools/comparison.py commit)
code="$dir/code-$commit"
if [ ! -f "$code/pyproject.toml" ]; then mkdir -p "$code" && git archive "$commit" | tar -x -C "$code"; echo "froze $commit in $code"; fi
faces=$(python tools/comparison.py faces --code "$code")   # builds missing faces with the frozen code; stops if they differ
echo "training faces: $faces (sha256 checked)"
data=${CRVAE_DATA:-$(python -c "from crvae.core import data_home; print(data_home())")}
mkdir -p "$dir/runs"
CRVAE_DATA="$data" nohup nice -n 10 python tools/comparison.py watch --runs "$dir/runs" --code "$code" --commit "$commit" \
  --jobs 2 --every 60 --note "$note" >> "$dir/watch.log" 2>&1 &
sleep 5; tail -n 5 "$dir/watch.log"
echo "watching: runs in $dir/runs, log $dir/watch.log; stop with: pkill -TERM -f 'tools/comparison.py watch'"
