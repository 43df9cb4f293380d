#!/usr/bin/env bash
# Train every model of the book with the command line and export its generator (fp16) to
# gan_utils/pretrained/NAME.pt. The budgets below take 5 minutes to under 2 hours of one CPU core per model
# (OMP_NUM_THREADS=1 on a 2-core x86 CPU, two models at a time); on a GPU raise the epochs. An existing
# run folder is resumed, so raising a budget continues the run instead of starting again.
# The recipe is the one each shipped file was trained with (its metadata records it). The cGAN, the DCGAN,
# the LSGAN, the WGAN-GP, the MLP and conv were trained with the book's best recipe (EMA of G, FID scored during
# training, the best epoch exported); for the article's MLP that recipe is the WGAN-GP loss, since its own
# BCE recipe collapses on every seed (chapter 10.11). Their budgets are where the FID curve flattened, or,
# for the MLP and the WGAN-GP, where the run was stopped while the curve still fell slowly (chapter 10.10).
# The article's conv pair (best recipe) was stopped after 20 epochs, where its FID curve had flattened
# (81.8, 81.6, 81.6 at n=2000 over epochs 18-20). The WGAN (best recipe: its paper's RMSprop, clipping and
# k = 5, with EMA and FID tracking) was stopped after 80 epochs (58 CPU-min) with the curve still falling
# about 0.5 per epoch near 182 at n=2000 (chapter 10.10).
# dcgan-emoji64, chapter 12's 64x64 colour DCGAN, was trained by that chapter's full run on the OpenMoji
# folder; the command below is the same recipe on the command line.
# Since then the best recipes of cgan and conv re-estimate the EMA's BatchNorm statistics (standing_stats,
# chapter 10.11), which their shipped files were trained without: add --standing-stats 0 to FLAGS to
# retrain them as shipped. The minutes above were measured on a CPU with AMX, where --amp is bf16; a CPU
# without AMX or AVX512-BF16 trains in fp32 (with one warning), about 1.75 times slower for the conv models.
# Usage: OMP_NUM_THREADS=1 bash scripts/train_pretrained.sh [NAME ...]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
declare -A EPOCHS=([mlp]=90 [conv]=20 [dcgan]=29 [cgan]=15 [lsgan]=30 [wgan]=80 [wgan-gp]=65)
declare -A RECIPE=([mlp]=best [conv]=best [dcgan]=best [cgan]=best [lsgan]=best [wgan]=best [wgan-gp]=best)
declare -A FLAGS=([mlp]="--eval-every 5" [conv]="--amp" [dcgan]="--amp" [cgan]="--amp" [lsgan]="--amp" [wgan]="--amp" [wgan-gp]="--amp")
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(mlp dcgan conv cgan lsgan wgan-gp wgan dcgan-emoji64)
for name in "${names[@]}"; do
  if [ "$name" = dcgan-emoji64 ]; then
    folder=$($PY -c "from gan_utils import images; print(images.openmoji_folder())")
    $PY -m gan_utils train --model dcgan --data "$folder" --image-size 64 --batch-size 64 --amp --epochs 40 \
      --out "runs/pretrained-$name" --resume --quiet
    $PY -m gan_utils export --run "runs/pretrained-$name" --name "$name" --force
    continue
  fi
  echo "== $name: ${EPOCHS[$name]} epochs ${FLAGS[$name]}"
  $PY -m gan_utils train --model "$name" --epochs "${EPOCHS[$name]}" --recipe "${RECIPE[$name]}" ${FLAGS[$name]} --out "runs/pretrained-$name" --resume --quiet
  $PY -m gan_utils export --run "runs/pretrained-$name" --name "$name" --force  # replaces the shipped file (old one: NAME.pt.bak)
done
