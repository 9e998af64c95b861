import torch

from lcaflow.gradients import compute_chunk
from lcaflow.progress import stage

with stage("gradients", snakemake.log[0]):
    torch.set_num_threads(snakemake.params.threads)  # configured, not scaled to --cores: it fixes the float sums
    compute_chunk(
        snakemake.wildcards.run,
        snakemake.params.run,
        snakemake.params.lca,
        int(snakemake.wildcards.chunk),
        snakemake.input.trajectory,
        snakemake.input.data,
        snakemake.output[0],
    )
