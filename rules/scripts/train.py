import torch

from lcaflow.progress import stage
from lcaflow.training import train

with stage("train", snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    train(
        snakemake.wildcards.run, snakemake.params.run, snakemake.input.data, snakemake.output[0], snakemake.params.checkpoint_dir
    )
