from lcaflow.progress import stage
from lcaflow.training import adopt_trajectory

with stage("adopt_trajectory", snakemake.log[0]):
    p = snakemake.params
    adopt_trajectory(snakemake.wildcards.run, p.run, snakemake.input.recorded, snakemake.input.data, snakemake.output[0])
