from pathlib import Path

import torch

from lcaflow.config import validate_config
from lcaflow.gpus import claim_gpu
from lcaflow.progress import stage
from lcaflow.resources import check_free_space
from lcaflow.training import train

with stage("train", snakemake.log[0]):
    p = snakemake.params
    claim_gpu(p.run["device"])  # before the first CUDA call (lcaflow/gpus.py)
    torch.set_num_threads(p.threads)  # the configured count, not one scaled to --cores: it fixes the float sums
    # The disk check reads the whole config rather than params, so LCA settings never trigger retraining.
    config = validate_config(snakemake.config)
    existing = [Path(snakemake.input.data), Path(p.checkpoint_dir) / "params.f32"]
    present = sum(f.stat().st_size for f in existing if f.exists())
    check_free_space(snakemake.wildcards.run, p.run, config["lca"], config["results_dir"], present)
    every = config["runs"][snakemake.wildcards.run]["checkpoint_every"]
    train(snakemake.wildcards.run, p.run, snakemake.input.data, snakemake.output[0], p.checkpoint_dir, every)
