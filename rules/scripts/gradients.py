import torch

from lcaflow.config import with_left_out_settings
from lcaflow.gpus import claim_gpu
from lcaflow.gradients import compute_chunk
from lcaflow.progress import stage

with stage("gradients", snakemake.log[0]):
    claim_gpu(snakemake.params.run["device"])  # before the first CUDA call (lcaflow/gpus.py)
    torch.set_num_threads(snakemake.params.threads)  # configured, not scaled to --cores: it fixes the float sums
    compute_chunk(
        snakemake.wildcards.run,
        snakemake.params.run,
        with_left_out_settings(snakemake.params.lca, snakemake.config),
        int(snakemake.wildcards.chunk),
        snakemake.input.trajectory,
        snakemake.input.data,
        snakemake.output[0],
    )
