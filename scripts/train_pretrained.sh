#!/usr/bin/env bash
# Train every model of the book with the command line and export its generator (fp16) to
# gan_utils/pretrained/NAME.pt. The budgets below fit a shared 2-core CPU in under an hour;
# on a GPU raise the epochs. Usage: bash scripts/train_pretrained.sh [NAME ...]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
declare -A EPOCHS=([mlp]=20 [conv]=1 [dcgan]=3 [cgan]=2 [lsgan]=2 [wgan]=2 [wgan-gp]=2)
declare -A FLAGS=([mlp]="" [conv]="--amp" [dcgan]="--amp" [cgan]="--amp" [lsgan]="--amp" [wgan]="--amp" [wgan-gp]="--amp")
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(mlp dcgan conv cgan lsgan wgan-gp wgan)
for name in "${names[@]}"; do
  echo "== $name: ${EPOCHS[$name]} epochs ${FLAGS[$name]}"
  $PY -m gan_utils train --model "$name" --epochs "${EPOCHS[$name]}" ${FLAGS[$name]} --out "runs/pretrained-$name" --resume --quiet
  $PY -m gan_utils export --run "runs/pretrained-$name" --name "$name"
done
