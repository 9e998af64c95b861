from lcaflow.assemble import assemble
from lcaflow.config import with_left_out_settings
from lcaflow.progress import stage

with stage("assemble", snakemake.log[0]):
    assemble(
        snakemake.wildcards.run,
        snakemake.params.run,
        with_left_out_settings(snakemake.params.lca, snakemake.config),
        snakemake.input.trajectory,
        list(snakemake.input.chunks),
        snakemake.output.lca,
        snakemake.output.grounding,
    )
