# Figures: analysis tables -> PNGs under results/runs/{run}/figures/ and results/experiments/;
# every figure goes into `snakemake --report` with a caption saying how to read it.


rule figure_grounding:
    input:
        tsv=stats_path("grounding.tsv"),
        json=f"{RESULTS}/runs/{{run}}/grounding.json",
    output:
        report(figure_path("grounding.png"), **run_report("grounding")),
    log:
        f"{RESULTS}/logs/figures/{{run}}/grounding.log",
    conda:
        "../envs/lca.yaml"
    script:
        "scripts/figure.py"


rule figure_noise:
    input:
        iterations=stats_path("noise_iterations.tsv"),
        layers=stats_path("noise_layers.tsv"),
        histogram=stats_path("lca_histogram.tsv"),
        help_fraction=stats_path("help_fraction.tsv"),
        json=stats_path("noise.json"),
    output:
        report(figure_path("noise.png"), **run_report("noise")),
    log:
        f"{RESULTS}/logs/figures/{{run}}/noise.log",
    conda:
        "../envs/lca.yaml"
    script:
        "scripts/figure.py"


rule figure_heavy_tails:
    input:
        histogram=stats_path("lca_histogram.tsv"),
        json=stats_path("noise.json"),
    output:
        report(figure_path("heavy_tails.png"), **run_report("heavy_tails")),
    log:
        f"{RESULTS}/logs/figures/{{run}}/heavy_tails.log",
    conda:
        "../envs/lca.yaml"
    script:
        "scripts/figure.py"


rule figure_oscillation:
    input:
        layers=stats_path("oscillation_layers.tsv"),
        traces=stats_path("oscillation_traces.tsv"),
        json=stats_path("oscillation.json"),
    output:
        report(figure_path("oscillation.png"), **run_report("oscillation")),
    log:
        f"{RESULTS}/logs/figures/{{run}}/oscillation.log",
    conda:
        "../envs/lca.yaml"
    script:
        "scripts/figure.py"


rule figure_layers:
    input:
        layers=stats_path("layers.tsv"),
        cumulative=stats_path("layers_cumulative.tsv"),
    output:
        report(figure_path("layers.png"), **run_report("layers")),
    log:
        f"{RESULTS}/logs/figures/{{run}}/layers.log",
    conda:
        "../envs/lca.yaml"
    script:
        "scripts/figure.py"


rule figure_synchronization:
    input:
        moments=stats_path("moments.tsv"),
        json=stats_path("synchronization.json"),
    output:
        layers=report(
            figure_path("synchronization.png"), **run_report("synchronization")
        ),
        classes=report(
            figure_path("synchronization_classes.png"),
            **run_report("synchronization_classes"),
        ),
    log:
        f"{RESULTS}/logs/figures/{{run}}/synchronization.log",
    conda:
        "../envs/lca.yaml"
    script:
        "scripts/figure.py"


rule figure_neurons:
    input:
        h5=stats_path("neurons.h5"),
        json=stats_path("neurons.json"),
    output:
        neurons=report(figure_path("neurons.png"), **run_report("neurons")),
        parameters=report(figure_path("parameters.png"), **run_report("parameters")),
        correlation=report(figure_path("correlation.png"), **run_report("correlation")),
        specialization=report(
            figure_path("specialization.png"), **run_report("specialization")
        ),
    log:
        f"{RESULTS}/logs/figures/{{run}}/neurons.log",
    conda:
        "../envs/lca.yaml"
    script:
        "scripts/figure.py"


rule heatmaps:
    input:
        lca=f"{RESULTS}/runs/{{run}}/lca.h5",
    output:
        report(figure_path("heatmaps.png"), **run_report("heatmaps")),
    log:
        f"{RESULTS}/logs/figures/{{run}}/heatmaps.log",
    conda:
        "../envs/lca.yaml"
    resources:
        mem_mb=analysis_mem_mb,
        runtime=analysis_runtime,
    params:
        iterations=ANALYSIS["heatmap_iterations"],
    script:
        "scripts/figure.py"


rule animation:
    input:
        lca=f"{RESULTS}/runs/{{run}}/lca.h5",
    output:
        report(figure_path("animation.gif"), **run_report("animation")),
    log:
        f"{RESULTS}/logs/figures/{{run}}/animation.log",
    benchmark:
        f"{RESULTS}/benchmarks/figures/{{run}}/animation.tsv"
    conda:
        "../envs/lca.yaml"
    resources:
        mem_mb=analysis_mem_mb,
        runtime=analysis_runtime,
    params:
        max_frames=ANALYSIS["animation_max_frames"],
        fps=ANALYSIS["animation_fps"],
    script:
        "scripts/figure.py"


rule figure_experiment:
    input:
        unpack(experiment_figure_inputs),
    output:
        report(
            f"{RESULTS}/experiments/{{experiment}}/experiment.png",
            caption="../report/figures/experiment.rst",
            category="Experiments",
            subcategory="{experiment}",
        ),
    log:
        f"{RESULTS}/logs/figures/experiments/{{experiment}}.log",
    conda:
        "../envs/lca.yaml"
    script:
        "scripts/figure.py"


rule figures_all:
    input:
        figure_outputs(),
