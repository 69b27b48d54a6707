#!/usr/bin/env bash
# Reproduce the bundled demo model (gen1/assets/demo-model) from nothing but this repository.
# Every step resumes from its last checkpoint: rerun the script after an interruption (or run the steps in
# slices: add --minutes M to the component trainers; the gen1 train step checkpoints every 100 steps).
# On the shared 2-core CPU used to build the shipped model this took about 50 minutes; a GPU needs minutes.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-.venv/bin/python}
R=${RUNS:-runs/demo}
T=${THREADS:-2}

# 1. components (each exports to $R/<name>/export)
$PY scripts/demo/train_component.py vae     --out "$R/vae"     --steps 600 --threads "$T"
$PY scripts/demo/train_component.py content --out "$R/content" --steps 800 --threads "$T"
$PY scripts/demo/train_component.py depth   --out "$R/depth"   --steps 400 --threads "$T"

# 2. UNet data (synthetic clips -> gen1 shards with exact depth) and the random image-UNet base
$PY scripts/demo/prepare_unet.py --vae "$R/vae/export" --content "$R/content/export" \
    --shards "$R/shards" --base "$R/base" --videos 1200 --images 400 --threads "$T"

# 3. the VideoUNet, trained by gen1's own trainer with the committed preset
$PY -m gen1 train demo_joint model.base="$R/base" data.shards="$R/shards" \
    train.output_dir="$R/unet" train.resume=latest

# 4. assemble (fp16 safetensors), curves, evaluation table
$PY scripts/demo/assemble.py --runs "$R" --out gen1/assets/demo-model
$PY scripts/demo/plot_curves.py --runs "$R" --out docs/demo_training_curves.png
$PY scripts/demo/evaluate.py --edits 32 --steps 15 --json "$R/eval.json"
