from lcaflow.plan import write_plan
from lcaflow.progress import stage

sm = snakemake  # noqa: F821 (injected by Snakemake)

with stage("plan", sm.log[0]):
    p = sm.params
    write_plan(p.runs, p.lca, p.threads, p.results, sm.output.md, sm.output.json, p.analysis_jobs, p.figure_jobs)
