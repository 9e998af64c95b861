from lcaflow.config import validate_config
from lcaflow.progress import stage
from lcaflow.training import adopt_trajectory

with stage("adopt_trajectory", snakemake.log[0]):
    config = validate_config(snakemake.config)  # for the disk check only: LCA settings never re-adopt
    i = snakemake.input
    adopt_trajectory(
        snakemake.wildcards.run,
        snakemake.params.run,
        i.recorded,
        i.data,
        snakemake.output[0],
        config["lca"],
        config["results_dir"],
    )
