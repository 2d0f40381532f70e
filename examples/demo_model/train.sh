#!/usr/bin/env bash
# The whole recipe of the bundled demo model (docs/demo_model.md), from the photos to the package folder.
#
#   bash examples/demo_model/train.sh     # WORK=demo_work by default; fetches Debian's wallpaper packages itself
#
# Each step is skipped when its output exists, so running it again continues where it stopped (the SSP-IR step
# resumes from its latest checkpoint). The shipped weights were made by these commands on a 2-core CPU
# (about 2 h 50 min in all; docs/demo_model.md lists the departures); on a GPU the same commands take minutes (the
# training steps pick the GPU by themselves).
# The last step refuses to replace the model already in the package: pass --overwrite (given to export.py) for that.
set -euo pipefail

WORK=${WORK:-demo_work}
HERE=$(dirname "$0")

if [ ! -f "$WORK/data/photos.tsv" ]; then
    fetch=--fetch
    [ -d "$WORK/debian/plasma-workspace-wallpapers" ] && fetch=
    python "$HERE/prepare_data.py" $fetch --debian_dir "$WORK/debian" --output_dir "$WORK/data"
fi
[ -f "$WORK/vae/config.json" ] || python "$HERE/train_vae.py" --train_dir "$WORK/data/train_0.4" --output_dir "$WORK/vae"
[ -f "$WORK/base/sd/model_index.json" ] || python "$HERE/build_components.py" --vae "$WORK/vae" --output_dir "$WORK/base"
if [ ! -f "$WORK/sspir/model_index.json" ]; then
    python "$HERE/../train_sspir.py" \
        --pretrained_model_name_or_path "$WORK/base/sd" --image_encoder "$WORK/base/clip" --branch_type attention --image_embed_dim 64 \
        --train_unet --freeze_text_attention \
        --train_data_dir "$WORK/data/train_0.4" --resolution 256 --scale 4 \
        --train_batch_size 4 --max_train_steps 5000 \
        --learning_rate 5e-4 --lr_scheduler cosine --lr_warmup_steps 200 \
        --seed 0 --output_dir "$WORK/sspir" --resume_from_checkpoint latest \
        --checkpointing_steps 500 --checkpoints_total_limit 2 --validation_steps 100000 --report_to none
fi
# Stage 2: a full-resolution restorer for the structure prior (MSRResNet at scale 1, the research code's use_srresnet),
# added at identity to the stage-1 model and trained with it on smaller crops, its L1/FFT losses weighted up.
if [ ! -f "$WORK/sspir_restorer/model_index.json" ]; then
    python "$HERE/../train_sspir.py" \
        --pretrained_sspir "$WORK/sspir" --structure_residual_blocks 6 --structure_residual_channels 32 \
        --train_unet --freeze_text_attention \
        --train_data_dir "$WORK/data/train_0.4" --resolution 128 --scale 4 \
        --train_batch_size 8 --max_train_steps 2000 \
        --learning_rate 2e-4 --lr_scheduler cosine --lr_warmup_steps 100 --rgb_l1_weight 1.0 --rgb_fft_weight 0.1 \
        --seed 0 --output_dir "$WORK/sspir_restorer" --resume_from_checkpoint latest \
        --checkpointing_steps 500 --checkpoints_total_limit 2 --validation_steps 100000 --report_to none
fi
# Stage 3: the restorer alone, for fidelity (L1 to the ground truth on 64-px crops, as BasicSR pretrains MSRResNet for
# PSNR); nothing else of the model changes. The pipeline follows this prior through the restoration guidance.
if [ ! -f "$WORK/sspir_final/model_index.json" ]; then
    python "$HERE/../train_sspir.py" \
        --pretrained_sspir "$WORK/sspir_restorer" --train_restorer_only \
        --train_data_dir "$WORK/data/train_0.4" --resolution 64 --scale 4 \
        --train_batch_size 8 --max_train_steps 3000 \
        --learning_rate 3e-4 --lr_scheduler cosine --rgb_l1_weight 1.0 --rgb_fft_weight 0 \
        --seed 0 --output_dir "$WORK/sspir_final" --resume_from_checkpoint latest \
        --checkpointing_steps 500 --checkpoints_total_limit 2 --validation_steps 100000 --report_to none
fi
# Stage 4 (0.5): the VAE's decoder fine-tuned for texture, on all the training photos (0.5's new ones too), with a
# spectral L1 term and a small patch GAN trained from scratch; the encoder, and so every latent, stays as it was.
[ -f "$WORK/vae_texture/config.json" ] || python "$HERE/train_vae.py" --train_dir "$WORK/data/train" \
    --output_dir "$WORK/vae_texture" --init_from "$WORK/vae" --decoder_only \
    --fft_weight 0.1 --adversarial_weight 0.05 --steps 1500 --learning_rate 2e-4
# The call settings chosen on the validation_new crops travel with the model (SSPIRPipeline.recommended_settings).
python "$HERE/export.py" "$WORK/sspir_final" --vae "$WORK/vae_texture" --recommended_settings \
    '{"num_inference_steps": 2, "guidance_scale": 1.0, "restoration_guidance_scale": 0.3, "restoration_guidance_decay": 0.0}' "$@"
