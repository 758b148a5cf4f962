#!/usr/bin/env bash
# Behaviour fingerprints of a crvae version, for refactors that must change nothing (issue 16):
#   tools/fingerprints.sh CODE_DIR OUT_DIR     # CODE_DIR holds crvae/ (e.g. `git archive REV crvae | tar -x -C DIR`)
# then compare two OUT_DIRs: `diff A/weights.sha256 B/weights.sha256` (paths inside OUT_DIR are relative) and the same
# for figures.sha256. It writes:
# - weights.sha256: a tiny run of vae-gan, crvae-gan and acvae-gan for 4 steps, and the same run stopped at step 2 and
#   resumed (full-* and part-* must agree at step 4), and a Stage 2 run of 3 steps, straight and resumed from step 1;
# - figures.sha256: every figure of `crvae figures --config tiny` from the shipped checkpoints (30,000 avatar faces in
#   $CRVAE_FIGURE_DATA, default $CRVAE_DATA).
# Needs the 1,000-face test set in $CRVAE_DATA (`crvae data avatars --n 1000 --size 64 --seed 0`).
set -u
CODE=$(cd "$1" && pwd); mkdir -p "$2"; OUT=$(cd "$2" && pwd)
export PYTHONPATH=$CODE OMP_NUM_THREADS=1 CRVAE_PLOTS=0 MPLBACKEND=Agg PYTHONHASHSEED=0
FIG_DATA=${CRVAE_FIGURE_DATA:-${CRVAE_DATA:-}}
cd "$OUT" && rm -rf full-* part-* s2 s2p figs
T="--data avatars --n 1000 --size 64 --config tiny --no-progress --set batch_size=16 --set ckpt_every=1 --seed 3"
for m in vae-gan crvae-gan acvae-gan; do
  { python -m crvae train $m $T --steps 4 --out full-$m
    python -m crvae train $m $T --steps 2 --out part-$m
    python -m crvae train $m $T --steps 4 --out part-$m --resume; } > log-$m.txt 2>&1
done
S2="--n 200 --set batch_size=4 --set ckpt_every=1 --no-progress"
{ python -m crvae stage2 full-vae-gan --out s2 --steps 3 $S2
  python -m crvae stage2 full-vae-gan --out s2p --steps 1 $S2
  python -m crvae stage2 full-vae-gan --out s2p --steps 3 $S2 --resume; } > log-s2.txt 2>&1
CRVAE_DATA=$FIG_DATA python -m crvae figures --config tiny --out figs > log-figs.txt 2>&1
find . -name '*.safetensors' -path '*checkpoints*' | sort | xargs sha256sum > weights.sha256
find figs -name '*.png' | sort | xargs sha256sum > figures.sha256
for m in vae-gan crvae-gan acvae-gan; do
  a=$(grep "full-$m/checkpoints/step-0000004/" weights.sha256 | cut -c1-64); b=$(grep "part-$m/checkpoints/step-0000004/" weights.sha256 | cut -c1-64)
  [ -n "$a" ] && [ "$a" = "$b" ] && echo "$m: resumed = straight" || echo "$m: RESUMED DIFFERS (or failed: see log-$m.txt)"
done
a=$(grep "\./s2/checkpoints/step-0000003/" weights.sha256 | cut -c1-64); b=$(grep "\./s2p/checkpoints/step-0000003/" weights.sha256 | cut -c1-64)
[ -n "$a" ] && [ "$a" = "$b" ] && echo "stage2: resumed = straight" || echo "stage2: RESUMED DIFFERS (or failed: see log-s2.txt)"
echo "$(wc -l < weights.sha256) checkpoints, $(wc -l < figures.sha256) figures hashed in $OUT"
