from lcaflow.config import validate_config
from lcaflow.plan import write_plan
from lcaflow.progress import stage

with stage("plan", snakemake.log[0]):
    p = snakemake.params
    write_plan(validate_config(snakemake.config), snakemake.output.md, snakemake.output.json, p.analysis_jobs, p.figure_jobs)
