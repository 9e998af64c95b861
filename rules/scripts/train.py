from pathlib import Path

import torch

from lcaflow.cost.disk import check_free_space
from lcaflow.gpus import claim_gpu
from lcaflow.progress import stage
from lcaflow.settings import from_resources
from lcaflow.training import train

sm = snakemake  # noqa: F821 (injected by Snakemake)

with stage("train", sm.log[0]):
    p, i = sm.params, sm.input
    claim_gpu(p.run["device"])  # a GPU of this job's own, before the first CUDA call (lcaflow/gpus.py)
    torch.set_num_threads(p.threads)  # the configured count, not one scaled to --cores: it fixes the float sums
    present = sum(f.stat().st_size for f in (Path(i.data), Path(p.checkpoint_rows)) if f.exists())
    check_free_space(sm.wildcards.run, from_resources(sm.resources.run_disk), p.results, present)
    every = from_resources(sm.resources.execution)["checkpoint_every"]
    train(sm.wildcards.run, p.run, i.data, sm.output[0], p.checkpoint_dir, every)
