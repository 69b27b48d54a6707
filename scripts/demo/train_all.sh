#!/usr/bin/env bash
# Reproduce the bundled demo model (gen1/assets/demo-model) from nothing but this repository.
# Every step resumes from its last checkpoint: rerun the script after an interruption (or run the steps in
# slices: add --minutes M to the component trainers; the gen1 train steps checkpoint every 100-200 steps).
# Scenes are the demo world of gen1.demo.world (camera rolled up to 90 degrees). docs/demo.md says how the
# shipped weights were made (the same steps, partly at an earlier commit) and how long each step took.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-.venv/bin/python}
R=${RUNS:-runs/demo}
T=${THREADS:-2}

# 1. components (each exports to $R/<name>/export)
$PY scripts/demo/train_component.py vae     --out "$R/vae"     --steps 600  --threads "$T"
$PY scripts/demo/train_component.py content --out "$R/content" --steps 1100 --threads "$T"
$PY scripts/demo/train_component.py depth   --out "$R/depth"   --steps 2800 --threads "$T"

# 2. UNet data (synthetic clips -> gen1 shards with exact depth: 1200 8-frame videos, 32976 images) and the
#    random image-UNet base
$PY scripts/demo/prepare_unet.py --vae "$R/vae/export" --content "$R/content/export" \
    --shards "$R/shards" --base "$R/base" --videos 1200 --images 32976 --threads "$T"

# 3. the VideoUNet, trained by gen1's own trainer with the committed presets, in four runs (then two more, 4.):
#    joint (content, time, structure together) -> image-only (structure: 48 layouts per step), twice (the
#    second run restarts the cosine schedule from the first one's EMA weights) -> temporal layers only
$PY -m gen1 train demo_joint model.base="$R/base" data.shards="$R/shards" \
    train.output_dir="$R/unet" train.resume=latest train.max_steps=1800
$PY -m gen1 train demo_image model.base="$R/unet/export" data.shards="$R/shards" \
    train.output_dir="$R/unet_image" train.resume=latest
$PY -m gen1 train demo_image model.base="$R/unet_image/export" data.shards="$R/shards" \
    train.output_dir="$R/unet_image2" train.resume=latest train.max_steps=13000 optim.warmup_steps=100
$PY -m gen1 train demo_temporal model.base="$R/unet_image2/export" data.shards="$R/shards" \
    train.output_dir="$R/unet_video" train.resume=latest

# 4. what the UNet gets at inference: shards whose depth is the trained estimator's and whose content is
#    another scene in the clip's style (a reference, not the clip itself); the image stage continued on them,
#    then the temporal layers again
$PY scripts/demo/prepare_unet.py --vae "$R/vae/export" --content "$R/content/export" \
    --depth-estimator "$R/depth/export" --reference-content \
    --shards "$R/shards_ref" --videos 1200 --images 32976 --threads "$T"
$PY -m gen1 train demo_image model.base="$R/unet_video/export" data.shards="$R/shards_ref" \
    train.output_dir="$R/unet_ref" train.resume=latest train.max_steps=8000 optim.warmup_steps=100
$PY -m gen1 train demo_temporal model.base="$R/unet_ref/export" data.shards="$R/shards_ref" \
    train.output_dir="$R/unet_ref_video" train.resume=latest

# 5. a content encoder whose embedding carries every attribute of a style (hard-negative captions: each image
#    also scored against captions one attribute off), the inference-condition shards encoded with it, and the
#    image stage (6000 steps, then 3000 more at half the learning rate) and the temporal layers continued on them
$PY scripts/demo/train_component.py content --out "$R/content2" --steps 1400 --batch 128 --hard-negatives 3 \
    --clip-frames 1 --threads "$T"
$PY scripts/demo/prepare_unet.py --vae "$R/vae/export" --content "$R/content2/export" \
    --depth-estimator "$R/depth/export" --reference-content \
    --shards "$R/shards_ref2" --videos 1200 --images 32976 --threads "$T"
$PY -m gen1 train demo_image model.base="$R/unet_ref_video/export" data.shards="$R/shards_ref2" \
    train.output_dir="$R/unet_c2" train.resume=latest train.max_steps=6000 optim.warmup_steps=100
$PY -m gen1 train demo_image model.base="$R/unet_c2/export" data.shards="$R/shards_ref2" \
    train.output_dir="$R/unet_c2b" train.resume=latest train.max_steps=3000 optim.warmup_steps=50 optim.lr=2.5e-4
$PY -m gen1 train demo_temporal model.base="$R/unet_c2b/export" data.shards="$R/shards_ref2" \
    train.output_dir="$R/unet_c2b_video" train.resume=latest

# 6. a content encoder whose raw image embedding is also trained to classify each style attribute (linear heads,
#    cross-entropy; fine-tuned from the second encoder in two runs, the second with twice the heads' weight), the
#    inference-condition shards encoded with it, the image stage continued on them (8000 steps, then 4000 more at
#    half the learning rate), then the temporal layers
$PY scripts/demo/train_component.py content --out "$R/content3" --steps 800 --batch 128 --hard-negatives 3 \
    --clip-frames 1 --attribute-weight 1 --init "$R/content2/export" --threads "$T"
$PY scripts/demo/train_component.py content --out "$R/content4" --steps 600 --batch 128 --hard-negatives 3 \
    --clip-frames 1 --attribute-weight 2 --init "$R/content3/export" --threads "$T"
$PY scripts/demo/prepare_unet.py --vae "$R/vae/export" --content "$R/content4/export" \
    --depth-estimator "$R/depth/export" --reference-content \
    --shards "$R/shards_ref3" --videos 1200 --images 32976 --threads "$T"
$PY -m gen1 train demo_image model.base="$R/unet_c2b_video/export" data.shards="$R/shards_ref3" \
    train.output_dir="$R/unet_c4" train.resume=latest train.max_steps=8000 optim.warmup_steps=100
$PY -m gen1 train demo_image model.base="$R/unet_c4/export" data.shards="$R/shards_ref3" \
    train.output_dir="$R/unet_c4b" train.resume=latest train.max_steps=4000 optim.warmup_steps=50 optim.lr=2.5e-4
$PY -m gen1 train demo_temporal model.base="$R/unet_c4b/export" data.shards="$R/shards_ref3" \
    train.output_dir="$R/unet_c4b_video" train.resume=latest

# 7. a depth estimator that puts no frame upside down: the first one fine-tuned with the sign-aware median/MAD
#    loss (1500 steps at lr 5e-4, then 3000 more at 1e-3), the inference-condition shards rebuilt with its depth,
#    the image stage continued on them (6000 steps at half the learning rate), then the temporal layers
$PY scripts/demo/train_component.py depth --out "$R/depth2" --steps 1500 --loss ssimae --lr 5e-4 \
    --init "$R/depth/export" --threads "$T"
$PY scripts/demo/train_component.py depth --out "$R/depth3" --steps 3000 --loss ssimae --lr 1e-3 \
    --init "$R/depth2/export" --threads "$T"
$PY scripts/demo/prepare_unet.py --vae "$R/vae/export" --content "$R/content4/export" \
    --depth-estimator "$R/depth3/export" --reference-content \
    --shards "$R/shards_ref4" --videos 1200 --images 32976 --threads "$T"
$PY -m gen1 train demo_image model.base="$R/unet_c4b_video/export" data.shards="$R/shards_ref4" \
    train.output_dir="$R/unet_d3" train.resume=latest train.max_steps=6000 optim.warmup_steps=50 optim.lr=2.5e-4
$PY -m gen1 train demo_temporal model.base="$R/unet_d3/export" data.shards="$R/shards_ref4" \
    train.output_dir="$R/unet_d3_video" train.resume=latest

# 8. assemble (fp16 safetensors), curves, evaluation table
$PY scripts/demo/assemble.py --runs "$R" --out gen1/assets/demo-model
$PY scripts/demo/plot_curves.py --runs "$R" --out docs/demo_training_curves.png
$PY scripts/demo/evaluate.py --edits 32 --steps 15 --json "$R/eval.json"
