"""Lets `DiffusionPipeline.from_pretrained(folder, custom_pipeline="pipeline_sspir", trust_remote_code=True)`
load this folder (needs `pip install diffusers-sspir`)."""

from diffusers_sspir.pipelines.pipeline_sspir import SSPIRPipeline  # noqa: F401
