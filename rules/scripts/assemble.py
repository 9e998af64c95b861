from lcaflow.assemble import assemble
from lcaflow.progress import stage

sm = snakemake  # noqa: F821 (injected by Snakemake)

with stage("assemble", sm.log[0]):
    i, o = sm.input, sm.output
    assemble(sm.wildcards.run, sm.params.run, sm.params.lca, i.trajectory, list(i.chunks), o.lca, o.grounding)
