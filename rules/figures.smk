# Figures: analysis tables -> PNGs under results/runs/{run}/figures/ and results/experiments/;
# every figure goes into `snakemake --report` with a caption saying how to read it.


rule figure_grounding:
    input:
        lca=RUN.lca,  # its steps: the time axis
        tsv=RUN.stats("grounding.tsv"),
        json=RUN.grounding,
    output:
        report(RUN.figure("grounding.png"), **run_report("grounding")),
    log:
        PATHS.log("figures", "{run}", "grounding"),
    conda:
        "../envs/lca.yaml"
    resources:
        mem_mb=mem_mb("figure"),
    script:
        "scripts/figure.py"


rule figure_noise:
    input:
        lca=RUN.lca,  # its steps: the time axis
        iterations=RUN.stats("noise_iterations.tsv"),
        layers=RUN.stats("noise_layers.tsv"),
        histogram=RUN.stats("lca_histogram.tsv"),
        help_fraction=RUN.stats("help_fraction.tsv"),
        json=RUN.stats("noise.json"),
    output:
        report(RUN.figure("noise.png"), **run_report("noise")),
    log:
        PATHS.log("figures", "{run}", "noise"),
    conda:
        "../envs/lca.yaml"
    resources:
        mem_mb=mem_mb("figure"),
    script:
        "scripts/figure.py"


rule figure_heavy_tails:
    input:
        histogram=RUN.stats("lca_histogram.tsv"),
        json=RUN.stats("noise.json"),
    output:
        report(RUN.figure("heavy_tails.png"), **run_report("heavy_tails")),
    log:
        PATHS.log("figures", "{run}", "heavy_tails"),
    conda:
        "../envs/lca.yaml"
    resources:
        mem_mb=mem_mb("figure"),
    script:
        "scripts/figure.py"


rule figure_oscillation:
    input:
        lca=RUN.lca,  # its steps: the time axis
        layers=RUN.stats("oscillation_layers.tsv"),
        traces=RUN.stats("oscillation_traces.tsv"),
        json=RUN.stats("oscillation.json"),
    output:
        report(RUN.figure("oscillation.png"), **run_report("oscillation")),
    log:
        PATHS.log("figures", "{run}", "oscillation"),
    conda:
        "../envs/lca.yaml"
    resources:
        mem_mb=mem_mb("figure"),
    script:
        "scripts/figure.py"


rule figure_layers:
    input:
        lca=RUN.lca,  # its steps: the time axis
        layers=RUN.stats("layers.tsv"),
        cumulative=RUN.stats("layers_cumulative.tsv"),
    output:
        report(RUN.figure("layers.png"), **run_report("layers")),
    log:
        PATHS.log("figures", "{run}", "layers"),
    conda:
        "../envs/lca.yaml"
    resources:
        mem_mb=mem_mb("figure"),
    script:
        "scripts/figure.py"


rule figure_synchronization:
    input:
        lca=RUN.lca,  # its steps: the time axis
        moments=RUN.stats("moments.tsv"),
        json=RUN.stats("synchronization.json"),
    output:
        layers=report(
            RUN.figure("synchronization.png"), **run_report("synchronization")
        ),
        classes=report(
            RUN.figure("synchronization_classes.png"),
            **run_report("synchronization_classes"),
        ),
    log:
        PATHS.log("figures", "{run}", "synchronization"),
    conda:
        "../envs/lca.yaml"
    resources:
        mem_mb=mem_mb("figure"),
    script:
        "scripts/figure.py"


rule figure_neurons:
    input:
        lca=RUN.lca,  # its steps: the time axis
        h5=RUN.stats("neurons.h5"),
        json=RUN.stats("neurons.json"),
    output:
        neurons=report(RUN.figure("neurons.png"), **run_report("neurons")),
        parameters=report(RUN.figure("parameters.png"), **run_report("parameters")),
        correlation=report(RUN.figure("correlation.png"), **run_report("correlation")),
        specialization=report(
            RUN.figure("specialization.png"), **run_report("specialization")
        ),
    log:
        PATHS.log("figures", "{run}", "neurons"),
    conda:
        "../envs/lca.yaml"
    resources:
        mem_mb=mem_mb("figure"),
    script:
        "scripts/figure.py"


rule heatmaps:
    input:
        lca=RUN.lca,
    output:
        report(RUN.figure("heatmaps.png"), **run_report("heatmaps")),
    log:
        PATHS.log("figures", "{run}", "heatmaps"),
    conda:
        "../envs/lca.yaml"
    resources:
        mem_mb=mem_mb("analysis"),
        runtime=runtime("analysis"),
    params:
        **analysis_params("heatmaps"),
    script:
        "scripts/figure.py"


rule animation:
    input:
        lca=RUN.lca,
    output:
        report(RUN.figure("animation.gif"), **run_report("animation")),
    log:
        PATHS.log("figures", "{run}", "animation"),
    benchmark:
        PATHS.timing("figures", "{run}", "animation")
    conda:
        "../envs/lca.yaml"
    resources:
        mem_mb=mem_mb("analysis"),
        runtime=runtime("analysis"),
    params:
        **analysis_params("animation"),
    script:
        "scripts/figure.py"


rule figure_experiment:
    input:
        unpack(experiment_figure_inputs),
    output:
        report(EXPERIMENT.figure, **experiment_report("experiment", "figures")),
    log:
        PATHS.log("figures", "experiments", "{experiment}"),
    conda:
        "../envs/lca.yaml"
    script:
        "scripts/figure.py"


rule figure_example_groups:
    input:
        lca=RUN.lca,  # its steps: the time axis
        whom=RUN.stats("who_helped_whom.tsv"),
        whom_time=RUN.stats("who_helped_whom_time.tsv"),
        interference=RUN.stats("interference.tsv"),
        pairs=RUN.stats("interference_pairs.tsv"),
        clusters=RUN.stats("clusters.tsv"),
        curves=RUN.stats("cluster_curves.tsv"),
        json=RUN.stats("example_groups.json"),
    output:
        whom=report(RUN.figure("who_helped_whom.png"), **run_report("who_helped_whom")),
        interference=report(
            RUN.figure("interference.png"), **run_report("interference")
        ),
        clusters=report(
            RUN.figure("example_clusters.png"), **run_report("example_clusters")
        ),
    log:
        PATHS.log("figures", "{run}", "example_groups"),
    wildcard_constraints:
        run=one_of(GROUPED),
    conda:
        "../envs/lca.yaml"
    resources:
        mem_mb=mem_mb("figure"),
    script:
        "scripts/figure.py"


# Every figure of a run: those drawn from its tables, and those drawn from its LCA matrix
RUN_FIGURES = [
    rules.figure_grounding,
    rules.figure_noise,
    rules.figure_heavy_tails,
    rules.figure_oscillation,
    rules.figure_layers,
    rules.figure_synchronization,
    rules.figure_neurons,
    rules.heatmaps,
    rules.animation,
]


rule figures_all:
    input:
        outputs(*RUN_FIGURES, rules.figure_experiment),
        grouped_outputs(rules.figure_example_groups),
