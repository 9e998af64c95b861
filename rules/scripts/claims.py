from lcaflow.claims import claims_stage
from lcaflow.progress import stage

sm = snakemake  # noqa: F821 (injected by Snakemake)

with stage("claims", sm.log[0]):
    files = {key: list(sm.input[key]) for key in sm.input.keys()}
    claims_stage(sm.params.runs, sm.params.experiments, files, sm.output.md, sm.output.tsv)
