# Analyses: lca.h5 -> small tables under results/runs/{run}/stats/ and
# results/experiments/{experiment}/. Each streams the T x K matrices in blocks of iterations.


rule grounding_stats:
    input:
        lca=f"{RESULTS}/runs/{{run}}/lca.h5",
    output:
        tsv=report(
            stats_path("grounding.tsv"),
            caption="../report/tables/grounding.rst",
            category="Runs",
            subcategory="{run}",
            labels={"table": "grounding per iteration"},
        ),
    log:
        f"{RESULTS}/logs/analysis/{{run}}/grounding.log",
    conda:
        "../envs/lca.yaml"
    script:
        "scripts/analyze.py"


rule noise:
    input:
        lca=f"{RESULTS}/runs/{{run}}/lca.h5",
    output:
        json=stats_path("noise.json"),
        iterations=stats_path("noise_iterations.tsv"),
        layers=stats_path("noise_layers.tsv"),
        histogram=stats_path("lca_histogram.tsv"),
        help_fraction=stats_path("help_fraction.tsv"),
    log:
        f"{RESULTS}/logs/analysis/{{run}}/noise.log",
    benchmark:
        f"{RESULTS}/benchmarks/analysis/{{run}}/noise.tsv"
    conda:
        "../envs/lca.yaml"
    resources:
        mem_mb=analysis_mem_mb,
        runtime=analysis_runtime,
    params:
        sample_size=ANALYSIS["sample_size"],
        seed=ANALYSIS["seed"],
    script:
        "scripts/analyze.py"


rule oscillation:
    input:
        lca=f"{RESULTS}/runs/{{run}}/lca.h5",
    output:
        json=stats_path("oscillation.json"),
        layers=report(
            stats_path("oscillation_layers.tsv"),
            caption="../report/tables/oscillation.rst",
            category="Runs",
            subcategory="{run}",
            labels={"table": "oscillation per layer"},
        ),
        traces=stats_path("oscillation_traces.tsv"),
    log:
        f"{RESULTS}/logs/analysis/{{run}}/oscillation.log",
    benchmark:
        f"{RESULTS}/benchmarks/analysis/{{run}}/oscillation.tsv"
    conda:
        "../envs/lca.yaml"
    resources:
        mem_mb=analysis_mem_mb,
        runtime=analysis_runtime,
    params:
        window=ANALYSIS["oscillation_window"],
    script:
        "scripts/analyze.py"


rule layer_stats:
    input:
        lca=f"{RESULTS}/runs/{{run}}/lca.h5",
    output:
        layers=report(
            stats_path("layers.tsv"),
            caption="../report/tables/layers.rst",
            category="Runs",
            subcategory="{run}",
            labels={"table": "LCA per layer"},
        ),
        cumulative=stats_path("layers_cumulative.tsv"),
    log:
        f"{RESULTS}/logs/analysis/{{run}}/layers.log",
    conda:
        "../envs/lca.yaml"
    script:
        "scripts/analyze.py"


rule synchronization:
    input:
        lca=f"{RESULTS}/runs/{{run}}/lca.h5",
    output:
        json=stats_path("synchronization.json"),
        moments=stats_path("moments.tsv"),
    log:
        f"{RESULTS}/logs/analysis/{{run}}/synchronization.log",
    benchmark:
        f"{RESULTS}/benchmarks/analysis/{{run}}/synchronization.tsv"
    conda:
        "../envs/lca.yaml"
    resources:
        mem_mb=analysis_mem_mb,
        runtime=analysis_runtime,
    params:
        top=ANALYSIS["top_moments"],
        max_shift=ANALYSIS["max_shift"],
        repeats=ANALYSIS["shift_repeats"],
        min_fraction=ANALYSIS["sync_min_fraction"],
        seed=ANALYSIS["seed"],
    script:
        "scripts/analyze.py"


rule neurons:
    input:
        lca=f"{RESULTS}/runs/{{run}}/lca.h5",
    output:
        h5=stats_path("neurons.h5"),
        correlation=stats_path("correlation.tsv"),
        specialization=report(
            stats_path("specialization.tsv"),
            caption="../report/tables/specialization.rst",
            category="Runs",
            subcategory="{run}",
            labels={"table": "class specialisation per neuron"},
        ),
        json=stats_path("neurons.json"),
    log:
        f"{RESULTS}/logs/analysis/{{run}}/neurons.log",
    benchmark:
        f"{RESULTS}/benchmarks/analysis/{{run}}/neurons.tsv"
    conda:
        "../envs/lca.yaml"
    resources:
        mem_mb=analysis_mem_mb,
        runtime=analysis_runtime,
    params:
        top_params=ANALYSIS["top_params"],
        nodes=ANALYSIS["correlation_nodes"],
        per_node=ANALYSIS["correlation_weights_per_node"],
        seed=ANALYSIS["seed"],
    script:
        "scripts/analyze.py"


rule experiment:
    input:
        unpack(experiment_inputs),
    output:
        layers=report(
            f"{RESULTS}/experiments/{{experiment}}/layers.tsv",
            caption="../report/tables/experiment.rst",
            category="Experiments",
            subcategory="{experiment}",
            labels={"table": "per-layer tests across runs"},
        ),
        json=f"{RESULTS}/experiments/{{experiment}}/summary.json",
    log:
        f"{RESULTS}/logs/experiments/{{experiment}}.log",
    conda:
        "../envs/lca.yaml"
    params:
        runs=experiment_runs,
    script:
        "scripts/analyze.py"


rule comparison:
    input:
        unpack(comparison_inputs),
    output:
        report(
            f"{RESULTS}/experiments/{{experiment}}/comparison.tsv",
            caption="../report/tables/comparison.rst",
            category="Experiments",
            subcategory="{experiment}",
            labels={"table": "comparison with another experiment"},
        ),
    log:
        f"{RESULTS}/logs/experiments/{{experiment}}_comparison.log",
    conda:
        "../envs/lca.yaml"
    params:
        runs=experiment_runs,
        other=compared_experiment,
        other_runs=compared_runs,
    script:
        "scripts/analyze.py"


rule analysis_all:
    input:
        analysis_outputs(),
