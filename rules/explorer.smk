# Explorers: one self-contained, interactive HTML page per run and per experiment (lcaflow.explorer), drawn
# from the run's reductions and tables; each is also in `snakemake --report`.


rule run_explorer:
    input:
        lca=RUN.lca,
        grounding=RUN.grounding,
        moments=RUN.stats("moments.tsv"),
        claims=PATHS.claims_tsv,
    output:
        report(RUN.explorer, **run_report("explorer")),
    log:
        PATHS.log("explorer", "{run}"),
    benchmark:
        PATHS.timing("explorer", "{run}")
    conda:
        "../envs/lca.yaml"
    resources:
        mem_mb=mem_mb("analysis"),
        runtime=runtime("analysis"),
    script:
        "scripts/explorer.py"


rule experiment_explorer:
    input:
        unpack(experiment_explorer_inputs),
    output:
        report(
            EXPERIMENT.explorer, **experiment_report("experiment_explorer", "figures")
        ),
    log:
        PATHS.log("explorer", "experiments", "{experiment}"),
    benchmark:
        PATHS.timing("explorer", "experiments", "{experiment}")
    conda:
        "../envs/lca.yaml"
    resources:
        mem_mb=experiment_mem_mb("figure"),
    params:
        runs=lambda w: EXPERIMENTS[w.experiment]["runs"],
    script:
        "scripts/explorer.py"


rule explorer:
    input:
        outputs(rules.run_explorer, rules.experiment_explorer),
