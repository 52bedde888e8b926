#!/bin/sh
# Reproduce the shipped listening-model weights (weights/TRAINING.md records the shipped run).
# Usage (repository root): sh engines/analysis/train_all.sh "ROOT[:N] [ROOT[:N] ...]"
#   e.g. sh engines/analysis/train_all.sh "/tmp/an_corpus:40 /work/corpus:18"   (the shipped run)
# Every step is a `backline train ...` command and runs unchanged under torchrun
# (replace `backline` by `torchrun --nproc_per_node N -m backline.host.cli`).
set -e
CORPORA=${1:-/work/corpus}
R=runs/analysis
W=engines/analysis/weights
export OMP_NUM_THREADS=1
B=".venv/bin/backline train"
D="--corpus $CORPORA --cache $R/cache"
FIRST=$(echo "$CORPORA" | cut -d' ' -f1)   # pretraining used the first corpus only in the shipped run
P="--corpus $FIRST --cache $R/cache"
# 1. MusiCoder: the shipped encoder (CFM + CCM) and the pretraining ablation (equal, short schedules)
$B musicoder $P --config small --objectives cfm+ccm --steps 800 --minutes 22 --run-dir $R/musicoder_shipped --out $W/musicoder
for o in cfm+ccm cfm ccm none; do
  $B musicoder $P --config small --objectives $o --steps 250 --minutes 7 --run-dir $R/musicoder_$o
done
# 2. SimCLR encoder (embeddings), then the frame-aligned (mix, stem) fit model
$B simclr $P --config small --steps 450 --batch 16 --minutes 18 --run-dir $R/simclr --out $W/simclr
$B simclr $D --mode aligned --steps 1500 --batch 16 --lr 2e-3 --warmup 50 --minutes 12 --run-dir $R/aligned --out $W/matching
# 3. Tagger: λ grid + all five heads (the paper-001 table), then the shipped ResAtt head on a longer schedule
$B tagger $D --base musicoder --encoder $W/musicoder --steps 300 --batch 16 --minutes 24 --run-dir $R/tagger
$B tagger $D --base musicoder --encoder $W/musicoder --heads resatt --steps 700 --batch 16 --minutes 15 --run-dir $R/tagger_long
cp $R/tagger_long/tagger_resatt.safetensors $W/tagger.safetensors
cp $R/tagger_long/tagger_resatt.json $W/tagger.json
