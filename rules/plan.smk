# A cost plan before any compute (snakemake --cores 1 plan): every run's files and their sizes, the memory
# and time of each job (from a short calibration of the run's model on this machine), totals and free space.

# The jobs after the assembly, per run, as the plan prices them: those that read lca.h5 (and so the stored
# matrix), and the figures drawn from the analyses' tables.
RUN_JOBS = [
    getattr(rules, r.name)
    for r in workflow.rules
    if any("{run}" in f for f in getattr(rules, r.name).output)
]
READS_LCA = [r for r in RUN_JOBS if RUN.lca in r.input]
FROM_TABLES = [
    r
    for r in RUN_JOBS
    if r not in READS_LCA and any(RUN.stats_dir in str(f) for f in r.input)
]


rule plan:
    input:
        plan_inputs,
    output:
        md=PATHS.plan_md,
        json=PATHS.plan_json,
    log:
        PATHS.log("plan"),
    benchmark:
        PATHS.timing("plan")
    conda:
        "../envs/lca.yaml"
    threads: THREADS
    params:
        runs=RUNS,
        lca=LCA_PARAMS["plan"],
        threads=THREADS,
        results=results_dir,
        analysis_jobs=len(READS_LCA),
        figure_jobs=len(FROM_TABLES),
    script:
        "scripts/plan.py"
