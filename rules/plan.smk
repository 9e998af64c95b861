# A cost plan before any compute (snakemake --cores 1 plan): every run's files and their sizes, the memory
# and time of each job (from a short calibration of the run's model on this machine), totals and free space.

# Jobs after the assembly, per run: those that stream lca.h5, and the figures drawn from their tables
# (naming the rules makes a renamed one fail here, not count wrong).
STREAMING_RULES = [
    rules.summary,
    rules.grounding_stats,
    rules.noise,
    rules.oscillation,
    rules.layer_stats,
    rules.synchronization,
    rules.neurons,
    rules.heatmaps,
    rules.animation,
]
FIGURE_RULES = [
    rules.figure_grounding,
    rules.figure_noise,
    rules.figure_heavy_tails,
    rules.figure_oscillation,
    rules.figure_layers,
    rules.figure_synchronization,
    rules.figure_neurons,
]


rule plan:
    input:
        plan_inputs,
    output:
        md=f"{RESULTS}/plan.md",
        json=f"{RESULTS}/plan.json",
    log:
        f"{RESULTS}/logs/plan.log",
    benchmark:
        f"{RESULTS}/benchmarks/plan.tsv"
    conda:
        "../envs/lca.yaml"
    threads: THREADS
    params:
        runs=RUNS,
        lca=LCA,
        threads=THREADS,
        analysis_jobs=len(STREAMING_RULES),
        figure_jobs=len(FIGURE_RULES),
    script:
        "scripts/plan.py"
