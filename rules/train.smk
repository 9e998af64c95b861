rule train:
    input:
        data=data_file,
        sources=run_sources,
    output:
        trajectory_output(),
    log:
        f"{RESULTS}/logs/train/{{run}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train/{{run}}.tsv"
    wildcard_constraints:
        run=one_of(TRAINED),
    conda:
        "../envs/lca.yaml"
    threads: THREADS
    resources:
        gpu=gpus_wanted,
        mem_mb=train_mem_mb,
        runtime=train_runtime,
    params:
        run=run_config,
        checkpoint_dir=checkpoint_dir,
        threads=THREADS,
    script:
        "scripts/train.py"


# A run of your own training loop (runs.<run>.trajectory): the recording is checked against the run's
# model and data and becomes the run's trajectory file, as if the train rule had made it.
rule adopt_trajectory:
    input:
        recorded=recorded_trajectory,
        data=data_file,
        sources=run_sources,
    output:
        trajectory_output(),
    log:
        f"{RESULTS}/logs/train/{{run}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train/{{run}}.tsv"
    wildcard_constraints:
        run=one_of(RECORDED),
    conda:
        "../envs/lca.yaml"
    resources:
        mem_mb=train_mem_mb,
    params:
        run=run_config,
    script:
        "scripts/adopt_trajectory.py"


rule train_all:
    input:
        train_outputs(),
