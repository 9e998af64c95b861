from lcaflow.assemble import assemble
from lcaflow.progress import stage

with stage("assemble", snakemake.log[0]):
    assemble(
        snakemake.wildcards.run,
        snakemake.params.run,
        snakemake.params.lca,
        snakemake.input.trajectory,
        list(snakemake.input.chunks),
        snakemake.output.lca,
        snakemake.output.grounding,
    )
