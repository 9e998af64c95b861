from pathlib import Path

from lcaflow.claims import claims_stage
from lcaflow.progress import stage

sm = snakemake  # noqa: F821 (injected by Snakemake)

with stage("claims", sm.log[0]):
    claims_stage(sm.params.runs, sm.params.experiments, Path(sm.output.md).parent, sm.output.md, sm.output.tsv)
