#!/usr/bin/env bash
# `make test`: every check CI runs, each phase timed. Runs all phases, then fails if any failed.
set -uo pipefail
cd "$(dirname "$0")/.."
export CRVAE_DATA="${CRVAE_TEST_DATA:-$PWD/.cache/crvae-test}"   # one small shared cache, never the user's own
export MPLBACKEND=Agg PYTHONHASHSEED=0
export CRVAE_PLOTS=0   # runs skip their loss.png/curves.png (about a second each, over hundreds of short runs); no notebook shows one
declare -a NAMES=() SECS=() RCS=()

phase() {  # phase NAME COMMAND...
  local name=$1; shift
  echo; echo "=== $name: $*"
  local t0=$(date +%s.%N)
  "$@"; local rc=$?
  local dt=$(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$t0" "$(date +%s.%N)")
  NAMES+=("$name"); SECS+=("$dt"); RCS+=("$rc")
  echo "=== $name: exit $rc in ${dt} s"
}

snapshot() { find crvae nbs -type f \( -name '*.py' -o -name '*.ipynb' \) -not -path '*/.ipynb_checkpoints/*' | sort | xargs sha1sum; }

sync_check() {  # nbdev-export and nbdev-clean must leave the tree unchanged; README must match index.ipynb
  local before=$(snapshot)
  nbdev-export && nbdev-clean || return 1
  local after=$(snapshot)
  if [ "$before" != "$after" ]; then
    echo "nbdev-export/nbdev-clean changed these files (commit the exported/cleaned versions):"
    diff <(echo "$before") <(echo "$after") | grep '^>' | awk '{print "  " $3}'
    return 1
  fi
  python tools/readme.py --check
}

# a full run needs about 1 GB of scratch at its peak (tmp_path of passed tests is deleted as it goes)
df -Pk "${TMPDIR:-/tmp}" | awk 'NR==2 {printf "=== disk: %.1f GB free under %s (the tests need about 1 GB)\n", $4/1048576, $6}'
phase sync       sync_check
phase data       crvae data avatars --n 1000 --size 64 --seed 0
# two notebooks at a time on one thread each: the 2-core budget of CI
phase notebooks  env OMP_NUM_THREADS=1 nbdev-test --timing --n-workers 2
# the course site: every notebook to HTML, its links, pictures and maths checked (tests/test_site.py opens it)
phase docs       python tools/site.py
# the test files shared out over the cores (pytest-xdist; a file stays on one worker, so its fixtures are made once),
# one thread each, as the notebooks
phase pytest     env OMP_NUM_THREADS=1 python -m pytest -q -n "${CRVAE_TEST_WORKERS:-2}" --dist loadfile

echo; echo "=== summary (CRVAE_DATA=$CRVAE_DATA)"
fail=0
for i in "${!NAMES[@]}"; do
  printf '  %-10s %8s s   exit %s\n' "${NAMES[$i]}" "${SECS[$i]}" "${RCS[$i]}"
  [ "${RCS[$i]}" = 0 ] || fail=1
done
[ $fail = 0 ] && echo "make test: all phases passed" || echo "make test: FAILED"
exit $fail
