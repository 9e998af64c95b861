from lcaflow.progress import stage
from lcaflow.summary import summarize

sm = snakemake  # noqa: F821 (injected by Snakemake)

with stage("summary", sm.log[0]):
    summarize(sm.input[0], sm.output.json, sm.output.figure)
