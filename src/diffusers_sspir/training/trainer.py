"""The training loop shared by full SSP-IR training and LoRA fine-tuning (accelerate: one GPU, several GPUs or
machines, mixed precision, gradient accumulation; resumable from atomic checkpoints)."""

import argparse
import contextlib
import importlib.util
import json
import logging
import math
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import ProjectConfiguration, set_seed
from diffusers import DDPMScheduler
from diffusers.optimization import get_scheduler
from diffusers.utils import load_image
from torch.utils.data import DataLoader, Sampler
from tqdm.auto import tqdm

from ..data.datasets import PairedImageFolder, collate_fn
from ..data.degradations import RealESRGANDegradation, RealESRGANDegradationConfig
from ..files import claim, read_claim
from ..pipelines import SSPIRPipeline
from .arguments import parse_args
from .checkpoint import (
    TrainingProgress,
    list_checkpoints,
    load_checkpoint,
    prune_checkpoints,
    recover_interrupted_saves,
    resolve_checkpoint,
    save_checkpoint,
)
from .losses import diffusion_target, structure_prior_loss
from .module import RestorerTrainingModule, SSPIRTrainingModule

logger = get_logger(__name__)

WEIGHT_DTYPES = {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class TrainingSetupError(ValueError):
    """A problem with the options, the data or the output folder, found before training starts; the scripts print
    its message as one error, without a traceback."""


def derive_seed(*values: int) -> int:
    """A 63-bit seed from a tuple of integers (run seed, epoch, batch, process), the same on every machine."""
    return int(np.random.SeedSequence([int(v) for v in values]).generate_state(2, np.uint64)[0] >> np.uint64(1))


class EpochSampler(Sampler[int]):
    """A random order of the dataset that depends only on `(seed, epoch)`: a resumed run sees the same batches as an
    uninterrupted one, and every process of a multi-GPU run draws the same order (accelerate then shards it)."""

    def __init__(self, size: int, seed: int):
        self.size, self.seed, self.epoch = size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        generator = torch.Generator().manual_seed(derive_seed(self.seed, self.epoch))
        return iter(torch.randperm(self.size, generator=generator).tolist())

    def __len__(self) -> int:
        return self.size


def randn(shape: tuple[int, ...], generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """Standard normal noise drawn on the CPU from `generator` (so results do not depend on the device's RNG)."""
    return torch.randn(shape, generator=generator, dtype=torch.float32).to(device)


@dataclass
class TrainingParts:
    """What a training mode builds: the pipeline (for its frozen encoders and for validation), the trainable module
    and its trainable parameters, and how the structure-processor loss is weighted (`None`: not trained). With a
    [`RestorerTrainingModule`] only the structure prior's restorer runs, on the structure loss alone."""

    pipe: SSPIRPipeline
    module: SSPIRTrainingModule | RestorerTrainingModule
    trainable: dict[str, torch.nn.Parameter]
    rgb_weights: tuple[float, float] | None

    @property
    def restorer_only(self) -> bool:
        return isinstance(self.module, RestorerTrainingModule)


def resolve_report_to(report_to: str) -> str | list[str] | None:
    if report_to != "auto":
        return None if report_to == "none" else report_to
    installed = [name for name in ("tensorboard", "wandb") if importlib.util.find_spec(name) is not None]
    return installed or None


def check_output_dir(args: argparse.Namespace, is_main_process: bool = True) -> None:
    """Refuses to start a new run over the results of another one, unless asked to; with `--overwrite_output_dir`,
    deletes the old run's checkpoints first (so that a later `--resume_from_checkpoint latest` cannot pick one).
    A run that resumes from a checkpoint is not a new run; `latest` with no checkpoint yet is."""
    if not os.path.isdir(args.output_dir):
        return
    if args.resume_from_checkpoint and (args.resume_from_checkpoint != "latest" or list_checkpoints(args.output_dir)):
        return
    if args.overwrite_output_dir:
        if is_main_process:
            for _, path in list_checkpoints(args.output_dir):
                shutil.rmtree(path)
                logger.info(f"--overwrite_output_dir: deleted {path} of the earlier run.")
        return
    existing = [path for _, path in list_checkpoints(args.output_dir)]
    existing += [
        os.path.join(args.output_dir, name)
        for name in ("model_index.json", "pytorch_lora_weights.safetensors")
        if os.path.exists(os.path.join(args.output_dir, name))
    ]
    if existing:
        raise TrainingSetupError(
            f"--output_dir {args.output_dir} already holds a training run ({existing[0]}). Resume it with "
            "--resume_from_checkpoint latest, choose another folder, or pass --overwrite_output_dir to start afresh "
            "(the old checkpoints are deleted; the saved model is replaced at the end of the new run)."
        )


def load_degradation_config(args: argparse.Namespace) -> RealESRGANDegradationConfig:
    """`--degradation_config` (a JSON mapping read by `RealESRGANDegradationConfig.from_dict`: its fields, nested
    `first` / `second` stages, or Real-ESRGAN's flat names) with `--scale`."""
    overrides = {}
    if args.degradation_config:
        with open(args.degradation_config, encoding="utf-8") as file:
            overrides = json.load(file)
        if not isinstance(overrides, dict):
            raise ValueError("must hold a JSON object of degradation fields.")
        if overrides.get("scale", args.scale) != args.scale:
            raise ValueError(f"sets scale {overrides['scale']} but --scale is {args.scale}: make them agree.")
    if getattr(args, "gt_usm", False):
        overrides["gt_usm"] = True
    return RealESRGANDegradationConfig.from_dict({**overrides, "scale": args.scale})


def make_dataset(args: argparse.Namespace) -> tuple[PairedImageFolder, RealESRGANDegradation | None]:
    """The training folder, checked, and the degradation that makes LQ images of HQ-only data (`None` with `lq/`)."""
    try:
        dataset = PairedImageFolder(
            args.train_data_dir,
            resolution=args.resolution,
            scale=args.scale,
            random_flip=not args.no_random_flip,
            null_text_ratio=args.null_text_ratio,
            seed=args.seed,
            on_problem="skip" if args.skip_bad_files else "error",
            recursive=getattr(args, "train_data_recursive", False),
        )
    except ValueError as error:
        message = str(error).replace('pass `on_problem="skip"`', "pass --skip_bad_files")
        raise TrainingSetupError(f"--train_data_dir: {message}") from None
    if dataset.has_lq:
        if args.degradation_config or getattr(args, "gt_usm", False):
            logger.warning(
                f"--degradation_config / --gt_usm are not used: {args.train_data_dir} has lq/ images to train on."
            )
        return dataset, None
    try:
        return dataset, RealESRGANDegradation(load_degradation_config(args))
    except (ValueError, TypeError) as error:
        raise TrainingSetupError(f"--degradation_config {args.degradation_config}: {error}") from None


def place_parts(parts: TrainingParts, device: torch.device, weight_dtype: torch.dtype) -> None:
    """Frozen weights go to `weight_dtype` (they only run forward), trained ones stay in float32. The models outside
    the trained module go to the device too: validation runs the whole pipeline."""
    pipe = parts.pipe
    others = (pipe.unet, pipe.controlnet, pipe.image_refiner) if parts.restorer_only else ()
    upscaler = (pipe.upscaler,) if pipe.upscaler is not None else ()  # a stage-1 upscaler is never trained here
    for frozen in (pipe.vae, pipe.text_encoder, pipe.image_encoder, *upscaler, *others):
        frozen.requires_grad_(False).eval().to(device)
        if frozen.dtype != weight_dtype:
            frozen.to(dtype=weight_dtype)
    parts.module.to(device)
    for parameter in parts.module.parameters():
        parameter.data = parameter.data.to(torch.float32 if parameter.requires_grad else weight_dtype)


def make_optimizer(args: argparse.Namespace, parameters: list[torch.nn.Parameter], learning_rate: float):
    if args.use_8bit_adam:
        try:
            import bitsandbytes as bnb
        except ImportError as error:
            raise ImportError("--use_8bit_adam needs bitsandbytes: pip install bitsandbytes") from error
        optimizer_class = bnb.optim.AdamW8bit
    else:
        optimizer_class = torch.optim.AdamW
    return optimizer_class(
        parameters,
        lr=learning_rate,
        betas=(args.adam_beta1, args.adam_beta2),
        weight_decay=args.adam_weight_decay,
        eps=args.adam_epsilon,
    )


class LossComputer:
    """One training example batch → the loss terms: degrade (HQ-only data), upscale, encode with the frozen models,
    noise the latents, predict, compare."""

    def __init__(self, parts: TrainingParts, model: torch.nn.Module, degradation, weight_dtype: torch.dtype):
        self.parts, self.model, self.degradation, self.weight_dtype = parts, model, degradation, weight_dtype
        self.noise_scheduler = DDPMScheduler.from_config(parts.pipe.scheduler.config)

    def __call__(self, batch: dict, generator: torch.Generator, device: torch.device) -> dict[str, torch.Tensor]:
        pipe = self.parts.pipe
        high_quality = batch["gt"].to(device, torch.float32)
        with torch.no_grad():
            low_quality = batch["lq"].to(device, torch.float32) if "lq" in batch else None
            if low_quality is None:  # the target is unsharp-masked first when the degradation config says gt_usm
                high_quality, low_quality = self.degradation.degrade_pair(high_quality, generator=generator)
            upscaled = pipe.upscale(low_quality, high_quality.shape[-2:])  # as the pipeline does before every prior
        if self.parts.restorer_only:
            loss, terms = structure_prior_loss(self.model(upscaled), high_quality, *self.parts.rgb_weights)
            return {**terms, "loss": loss}
        with torch.no_grad():
            posterior = pipe.vae.encode((high_quality * 2 - 1).to(self.weight_dtype)).latent_dist
            latents = posterior.mean.float() + posterior.std.float() * randn(posterior.mean.shape, generator, device)
            latents = latents * pipe.vae.config.scaling_factor
            text_embeds, _ = pipe.encode_prompt(list(batch["caption"]), device, added_prompt=None)  # as captioned
            clip_tokens = pipe.clip_image_tokens(upscaled)
        noise = randn(latents.shape, generator, device)
        num_timesteps = self.noise_scheduler.config.num_train_timesteps
        timesteps = torch.randint(0, num_timesteps, (latents.shape[0],), generator=generator).to(device)
        noisy_latents = self.noise_scheduler.add_noise(latents, noise, timesteps)
        prediction, rgb = self.model(noisy_latents, timesteps, text_embeds, clip_tokens, upscaled)
        target = diffusion_target(self.noise_scheduler, latents, noise, timesteps)
        diffusion = F.mse_loss(prediction.float(), target.float())
        terms = {"diffusion": diffusion.detach()}
        loss = diffusion
        if self.parts.rgb_weights is not None:
            structure, structure_terms = structure_prior_loss(rgb, high_quality, *self.parts.rgb_weights)
            loss = loss + structure
            terms.update(structure_terms)
        terms["loss"] = loss
        return terms


def validate(args: argparse.Namespace, accelerator: Accelerator, parts: TrainingParts, step: int) -> None:
    """Restores the validation images with the current weights; saves them and logs them to the trackers."""
    pipe, module = parts.pipe, parts.module
    module.eval()
    pipe.set_progress_bar_config(disable=True)
    folder = os.path.join(args.output_dir, "validation", f"step-{step:07d}")
    os.makedirs(folder, exist_ok=True)
    restored = []
    with torch.no_grad(), accelerator.autocast():
        for path in args.validation_image:
            result = pipe(
                load_image(path),
                prompt=args.validation_prompt,
                upscale=args.scale,
                num_inference_steps=args.validation_inference_steps,
                generator=torch.Generator().manual_seed(args.seed),
            )
            image = result.images[0]
            image.save(os.path.join(folder, os.path.splitext(os.path.basename(path))[0] + ".png"))
            restored.append(np.asarray(image))
    module.train()
    for tracker in accelerator.trackers:
        if tracker.name == "tensorboard":
            for i, image in enumerate(restored):
                tracker.writer.add_image(f"validation/{i}", image, step, dataformats="HWC")
        elif tracker.name == "wandb":
            import wandb

            tracker.log({"validation": [wandb.Image(image) for image in restored]}, step=step)


def train(
    args: argparse.Namespace,
    build: Callable[[argparse.Namespace], TrainingParts],
    save_final: Callable[[argparse.Namespace, TrainingParts], None],
) -> TrainingParts:
    """Runs a training: `build` makes the parts (with their trainable parameters selected), `save_final` writes
    the result on the main process at the end."""
    project = ProjectConfiguration(
        project_dir=args.output_dir, logging_dir=os.path.join(args.output_dir, args.logging_dir)
    )
    accelerator = Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=args.mixed_precision,
        log_with=resolve_report_to(args.report_to),
        project_config=project,
    )
    if accelerator.mixed_precision == "fp16" and accelerator.device.type == "cpu":
        raise TrainingSetupError("--mixed_precision fp16 needs a GPU; on the CPU use bf16 or no.")
    with contextlib.ExitStack() as lock:
        if accelerator.is_main_process:
            lock.enter_context(output_dir_lock(args.output_dir))
        return _train(args, build, save_final, accelerator)


@contextlib.contextmanager
def output_dir_lock(output_dir: str):
    """Holds `--output_dir` for this run: a second run on the same folder refuses to start, naming the first; the
    lock of a killed run is taken over (see `diffusers_sspir.files.claim`)."""
    os.makedirs(output_dir, exist_ok=True)
    target = os.path.join(output_dir, "training")
    with claim(target) as mine:
        if not mine:
            holder = read_claim(target) or "unknown"
            raise TrainingSetupError(
                f"--output_dir {output_dir} is in use by another training run (host and process: {holder}); wait "
                "for it to end, or train into another folder."
            )
        yield


def _train(
    args: argparse.Namespace,
    build: Callable[[argparse.Namespace], TrainingParts],
    save_final: Callable[[argparse.Namespace, TrainingParts], None],
    accelerator: Accelerator,
) -> TrainingParts:
    """The body of [`train`], run while the main process holds the output folder."""
    if accelerator.is_main_process:
        for note in recover_interrupted_saves(args.output_dir):
            logger.info(note)
    accelerator.wait_for_everyone()
    check_output_dir(args, accelerator.is_main_process)
    accelerator.wait_for_everyone()
    device = accelerator.device
    weight_dtype = WEIGHT_DTYPES[accelerator.mixed_precision]
    if args.allow_tf32 and torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = True

    dataset, degradation = make_dataset(args)
    set_seed(args.seed)  # the initialisation of new layers
    try:
        parts = build(args)
    except TrainingSetupError:
        raise
    except (OSError, ValueError) as error:  # a model folder that is not one, bad LoRA targets, ...
        source = args.pretrained_sspir or args.pretrained_model_name_or_path
        raise TrainingSetupError(
            f"cannot build the model to train from {source}: {' '.join(str(error).split())}"
        ) from None
    place_parts(parts, device, weight_dtype)
    if args.gradient_checkpointing:  # refused with --train_restorer_only
        parts.module.unet.enable_gradient_checkpointing()
        parts.module.controlnet.enable_gradient_checkpointing()
    parameters = list(parts.trainable.values())
    learning_rate = args.learning_rate
    if args.scale_lr:
        learning_rate *= args.train_batch_size * args.gradient_accumulation_steps * accelerator.num_processes
    optimizer = make_optimizer(args, parameters, learning_rate)

    sampler = EpochSampler(len(dataset), args.seed)
    dataloader = DataLoader(
        dataset,
        batch_size=args.train_batch_size,
        sampler=sampler,
        collate_fn=collate_fn,
        num_workers=args.dataloader_num_workers,
        drop_last=True,
    )
    if len(dataloader) == 0:
        raise TrainingSetupError(
            f"--train_data_dir has {len(dataset)} usable images, fewer than one batch of --train_batch_size "
            f"{args.train_batch_size}."
        )
    lr_scheduler = get_scheduler(
        args.lr_scheduler,
        optimizer=optimizer,
        num_warmup_steps=args.lr_warmup_steps * accelerator.num_processes,
        num_training_steps=args.max_train_steps * accelerator.num_processes,
    )
    model, optimizer, dataloader, lr_scheduler = accelerator.prepare(parts.module, optimizer, dataloader, lr_scheduler)

    progress = TrainingProgress()
    try:
        checkpoint = (
            resolve_checkpoint(args.output_dir, args.resume_from_checkpoint) if args.resume_from_checkpoint else None
        )
        if checkpoint is not None:
            progress = load_checkpoint(checkpoint, parts.trainable, optimizer, lr_scheduler, accelerator.scaler)
    except ValueError as error:
        raise TrainingSetupError(str(error)) from None
    if checkpoint is not None:
        logger.info(f"Resumed from {checkpoint} at step {progress.global_step}.", main_process_only=True)
    elif args.resume_from_checkpoint:
        logger.info(f"No checkpoint in {args.output_dir} yet: starting a new run.", main_process_only=True)

    if accelerator.is_main_process:
        accelerator.init_trackers(args.tracker_project_name, config={k: str(v) for k, v in vars(args).items()})
    steps_per_epoch = math.ceil(len(dataloader) / args.gradient_accumulation_steps)
    epochs = math.ceil(args.max_train_steps / steps_per_epoch)
    logger.info(
        f"{len(dataset)} training images, {accelerator.num_processes} processes, {len(dataloader)} batches per "
        f"epoch per process, {steps_per_epoch} optimizer steps per epoch, {epochs} epochs; "
        f"{sum(p.numel() for p in parameters):,} trainable parameters.",
        main_process_only=True,
    )

    compute_loss = LossComputer(parts, model, degradation, weight_dtype)
    bar = tqdm(
        total=args.max_train_steps,
        initial=progress.global_step,
        desc="steps",
        disable=not accelerator.is_local_main_process,
    )
    model.train()
    running: dict[str, torch.Tensor] = {}  # loss terms summed on the device over the batches of one optimizer step
    accumulated = 0
    while progress.global_step < args.max_train_steps:
        loader = dataloader
        if progress.batches_in_epoch:
            loader = accelerator.skip_first_batches(dataloader, progress.batches_in_epoch)
        # accelerate's loader sets its own epoch counter on the sampler when iterated (it starts at 0 in every
        # process): give it the run's epoch, and the dataset too (accelerate only sets one of the two).
        loader.set_epoch(progress.epoch)
        dataset.set_epoch(progress.epoch)
        for batch in loader:
            generator = torch.Generator().manual_seed(
                derive_seed(args.seed, progress.epoch, progress.batches_in_epoch, accelerator.process_index)
            )
            with accelerator.accumulate(model):
                terms = compute_loss(batch, generator, device)
                accelerator.backward(terms["loss"])
                if accelerator.sync_gradients and args.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(parameters, args.max_grad_norm)
                optimizer.step()
                lr_scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            progress.batches_in_epoch += 1
            for name, value in terms.items():
                running[name] = running.get(name, 0) + value.detach().float()
            accumulated += 1
            if not accelerator.sync_gradients:
                continue
            progress.global_step += 1
            means = torch.stack(list(running.values())) / accumulated
            means = accelerator.reduce(means, reduction="mean")  # over processes: the loss of the global batch
            logs = dict(zip(running, means.tolist()))
            if not all(math.isfinite(value) for value in logs.values()):
                raise FloatingPointError(
                    f"The loss stopped being a finite number at step {progress.global_step} ({logs}); the last "
                    "checkpoint is intact. Lower --learning_rate, check the data, or use --mixed_precision bf16/no."
                )
            logs["lr"] = lr_scheduler.get_last_lr()[0]
            running, accumulated = {}, 0
            bar.update(1)
            bar.set_postfix({name: f"{value:.4g}" for name, value in logs.items()})
            accelerator.log(logs, step=progress.global_step)
            done = progress.global_step >= args.max_train_steps
            if progress.global_step % args.checkpointing_steps == 0 or done:
                if accelerator.is_main_process:
                    trained = {name: p.detach() for name, p in parts.trainable.items()}
                    path = save_checkpoint(
                        args.output_dir,
                        progress,
                        trained,
                        optimizer,
                        lr_scheduler,
                        accelerator.scaler,
                        run_options=run_options(args),
                    )
                    deleted = prune_checkpoints(args.output_dir, args.checkpoints_total_limit)
                    logger.info(f"Saved {path}" + (f"; deleted {', '.join(deleted)}." if deleted else "."))
                accelerator.wait_for_everyone()
            if args.validation_image and accelerator.is_main_process:
                if progress.global_step % args.validation_steps == 0 or done:
                    validate(args, accelerator, parts, progress.global_step)
            if done:
                break
        else:
            progress.epoch += 1
            progress.batches_in_epoch = 0
    bar.close()

    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        save_final(args, parts)
        logger.info(f"Saved the trained model to {args.output_dir}.")
    accelerator.end_training()
    return parts


PATH_OPTIONS = ("pretrained_model_name_or_path", "image_encoder", "pretrained_sspir", "train_data_dir", "upscaler")


def run_options(args: argparse.Namespace) -> dict[str, Any]:
    """The options of the run as JSON, local paths made absolute, for the `run.json` of each checkpoint."""
    options = json.loads(json.dumps(vars(args), default=str))
    for name in PATH_OPTIONS:
        value = options.get(name)
        if isinstance(value, str) and os.path.exists(value):
            options[name] = os.path.abspath(value)
    return options


def run_script(
    mode: str,
    build: Callable[[argparse.Namespace], TrainingParts],
    save_final: Callable[[argparse.Namespace, TrainingParts], None],
    argv: list[str] | None = None,
) -> None:
    """The command-line entry of a training script: parse and check the options, log at INFO, train, and print a
    set-up problem or a diverged loss as one error line (exit status 1) instead of a traceback; Ctrl-C ends the run
    with exit status 130, the checkpoints written so far intact (a checkpoint being written is never half there)."""
    args = parse_args(mode, argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    try:
        train(args, build, save_final)
    except (TrainingSetupError, FloatingPointError) as error:
        sys.exit(f"error: {error}")
    except KeyboardInterrupt:
        latest = list_checkpoints(args.output_dir)
        where = f"the last complete checkpoint is {latest[-1][1]}" if latest else "no checkpoint was written yet"
        logger.warning(f"Interrupted; {where} (resume with --resume_from_checkpoint latest).")
        sys.exit(130)
