# Analyses: lca.h5 -> small tables under results/runs/{run}/stats/ and results/experiments/{experiment}/.
# Each reads the reductions that the gradient jobs made (sums per group, neuron, class and parameter, sign
# counts); only the pooled distribution (noise) and the followed parameters (neurons, oscillation) stream
# the stored matrix, in blocks of rows.


rule grounding_stats:
    input:
        lca=RUN.lca,
    output:
        tsv=report(
            RUN.stats("grounding.tsv"),
            **run_report("grounding", "tables", "grounding per iteration"),
        ),
    log:
        PATHS.log("analysis", "{run}", "grounding"),
    conda:
        "../envs/lca.yaml"
    resources:
        mem_mb=mem_mb("analysis"),
        runtime=runtime("analysis"),
    script:
        "scripts/analyze.py"


rule noise:
    input:
        lca=RUN.lca,
    output:
        json=RUN.stats("noise.json"),
        iterations=RUN.stats("noise_iterations.tsv"),
        layers=RUN.stats("noise_layers.tsv"),
        histogram=RUN.stats("lca_histogram.tsv"),
        help_fraction=RUN.stats("help_fraction.tsv"),
    log:
        PATHS.log("analysis", "{run}", "noise"),
    benchmark:
        PATHS.timing("analysis", "{run}", "noise")
    conda:
        "../envs/lca.yaml"
    resources:
        mem_mb=mem_mb("analysis"),
        runtime=runtime("analysis"),
    params:
        **analysis_params("noise"),
    script:
        "scripts/analyze.py"


rule oscillation:
    input:
        lca=RUN.lca,
    output:
        json=RUN.stats("oscillation.json"),
        layers=report(
            RUN.stats("oscillation_layers.tsv"),
            **run_report("oscillation", "tables", "oscillation per layer"),
        ),
        traces=RUN.stats("oscillation_traces.tsv"),
    log:
        PATHS.log("analysis", "{run}", "oscillation"),
    benchmark:
        PATHS.timing("analysis", "{run}", "oscillation")
    conda:
        "../envs/lca.yaml"
    resources:
        mem_mb=mem_mb("analysis"),
        runtime=runtime("analysis"),
    params:
        **analysis_params("oscillation"),
    script:
        "scripts/analyze.py"


rule layer_stats:
    input:
        lca=RUN.lca,
    output:
        layers=report(
            RUN.stats("layers.tsv"), **run_report("layers", "tables", "LCA per layer")
        ),
        cumulative=RUN.stats("layers_cumulative.tsv"),
    log:
        PATHS.log("analysis", "{run}", "layers"),
    conda:
        "../envs/lca.yaml"
    resources:
        mem_mb=mem_mb("analysis"),
        runtime=runtime("analysis"),
    script:
        "scripts/analyze.py"


rule synchronization:
    input:
        lca=RUN.lca,
    output:
        json=RUN.stats("synchronization.json"),
        moments=RUN.stats("moments.tsv"),
    log:
        PATHS.log("analysis", "{run}", "synchronization"),
    benchmark:
        PATHS.timing("analysis", "{run}", "synchronization")
    conda:
        "../envs/lca.yaml"
    resources:
        mem_mb=mem_mb("analysis"),
        runtime=runtime("analysis"),
    params:
        **analysis_params("synchronization"),
    script:
        "scripts/analyze.py"


rule neurons:
    input:
        lca=RUN.lca,
    output:
        h5=RUN.stats("neurons.h5"),
        correlation=RUN.stats("correlation.tsv"),
        specialization=report(
            RUN.stats("specialization.tsv"),
            **run_report(
                "specialization", "tables", "class specialisation per neuron"
            ),
        ),
        json=RUN.stats("neurons.json"),
    log:
        PATHS.log("analysis", "{run}", "neurons"),
    benchmark:
        PATHS.timing("analysis", "{run}", "neurons")
    conda:
        "../envs/lca.yaml"
    resources:
        mem_mb=mem_mb("analysis"),
        runtime=runtime("analysis"),
    params:
        **analysis_params("neurons"),
    script:
        "scripts/analyze.py"


rule experiment:
    input:
        unpack(experiment_inputs),
    output:
        layers=report(
            EXPERIMENT.layers,
            **experiment_report("experiment", table="per-layer tests across runs"),
        ),
        json=EXPERIMENT.summary,
    log:
        PATHS.log("experiments", "{experiment}"),
    conda:
        "../envs/lca.yaml"
    params:
        runs=lambda w: EXPERIMENTS[w.experiment]["runs"],
    script:
        "scripts/analyze.py"


rule comparison:
    input:
        unpack(comparison_inputs),
    output:
        report(
            EXPERIMENT.comparison,
            **experiment_report(
                "comparison", table="comparison with another experiment"
            ),
        ),
    log:
        PATHS.log("experiments", "{experiment}_comparison"),
    conda:
        "../envs/lca.yaml"
    params:
        runs=lambda w: EXPERIMENTS[w.experiment]["runs"],
        other=compared_experiment,
        other_runs=lambda w: EXPERIMENTS[compared_experiment(w)]["runs"],
    script:
        "scripts/analyze.py"


# Who helped whom, interference, clusters of examples: only for the runs that group their examples
# (runs.<run>.example_groups) or follow examples (lca.example_curves)
rule example_groups_stats:
    input:
        lca=RUN.lca,
    output:
        whom=report(
            RUN.stats("who_helped_whom.tsv"),
            **run_report("who_helped_whom", "tables", "who helped whom"),
        ),
        whom_time=RUN.stats("who_helped_whom_time.tsv"),
        interference=RUN.stats("interference.tsv"),
        pairs=RUN.stats("interference_pairs.tsv"),
        clusters=RUN.stats("clusters.tsv"),
        members=RUN.stats("cluster_members.tsv"),
        curves=RUN.stats("cluster_curves.tsv"),
        json=RUN.stats("example_groups.json"),
    log:
        PATHS.log("analysis", "{run}", "example_groups"),
    wildcard_constraints:
        run=one_of(GROUPED),
    conda:
        "../envs/lca.yaml"
    resources:
        mem_mb=mem_mb("analysis"),
        runtime=runtime("analysis"),
    script:
        "scripts/analyze.py"


# Every analysis of a run, and of an experiment
RUN_ANALYSES = [
    rules.grounding_stats,
    rules.noise,
    rules.oscillation,
    rules.layer_stats,
    rules.synchronization,
    rules.neurons,
]


rule analysis_all:
    input:
        outputs(*RUN_ANALYSES, rules.experiment),
        grouped_outputs(rules.example_groups_stats),
