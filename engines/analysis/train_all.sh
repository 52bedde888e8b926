#!/bin/sh
# Reproduce the shipped listening-model weights (see weights/TRAINING.md for the numbers of the shipped run).
# Usage: sh engines/analysis/train_all.sh CORPUS [N_TRACKS]     (run from the repository root)
# Every step is a `backline train ...` command and runs unchanged under torchrun
# (replace `backline` by `torchrun --nproc_per_node N -m backline.host.cli`).
set -e
CORPUS=${1:-/work/corpus}
LIMIT=${2:+--limit-tracks $2}
R=runs/analysis
W=engines/analysis/weights
export OMP_NUM_THREADS=1
B=".venv/bin/backline train"
D="--corpus $CORPUS --cache $R/cache $LIMIT"
# 1. MusiCoder: the shipped encoder (CFM + CCM) and the pretraining ablation (equal, shorter schedules)
$B musicoder $D --config small --objectives cfm+ccm --steps ${MC_STEPS:-1200} --run-dir $R/musicoder_shipped --out $W/musicoder
for o in cfm+ccm cfm ccm none; do
  $B musicoder $D --config small --objectives $o --steps ${ABL_STEPS:-400} --run-dir $R/musicoder_$o
done
# 2. SimCLR encoder, then the (mix, stem) matching model initialised from it
$B simclr $D --config small --steps ${SC_STEPS:-700} --batch 32 --run-dir $R/simclr --out $W/simclr
$B simclr $D --mode matching --init $W/simclr --steps ${MT_STEPS:-600} --batch 32 --run-dir $R/matching --out $W/matching
# 3. Tagger: λ grid + five heads on the shipped MusiCoder; ResAtt is shipped
$B tagger $D --base musicoder --encoder $W/musicoder --steps ${TG_STEPS:-500} --batch 16 --run-dir $R/tagger
cp $R/tagger/tagger_resatt.safetensors $W/tagger.safetensors
cp $R/tagger/tagger_resatt.json $W/tagger.json
