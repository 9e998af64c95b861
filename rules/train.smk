# Training: the trajectory theta_0..theta_T of each run, or the checked recording of the user's own loop.


rule train:
    input:
        data=data_file,
        sources=run_sources,
    output:
        trajectory_output(),
    log:
        PATHS.log("train", "{run}"),
    benchmark:
        PATHS.timing("train", "{run}")
    wildcard_constraints:
        run=one_of(TRAINED),
    conda:
        "../envs/lca.yaml"
    threads: THREADS
    resources:
        gpu=gpus_wanted,
        cpus_per_gpu=cpus_per_gpu,
        mem_mb=mem_mb("train"),
        runtime=runtime("train"),
        run_disk=run_disk,
        execution=run_execution,
    params:
        run=run_params,
        threads=THREADS,
        checkpoint_dir=RUN.checkpoint_dir,
        checkpoint_rows=RUN.checkpoint_rows,
        results=results_dir,
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
        PATHS.log("train", "{run}"),
    benchmark:
        PATHS.timing("train", "{run}")
    wildcard_constraints:
        run=one_of(RECORDED),
    conda:
        "../envs/lca.yaml"
    resources:
        mem_mb=mem_mb("train"),
        runtime=runtime("train"),
        run_disk=run_disk,
    params:
        run=run_params,
        results=results_dir,
    script:
        "scripts/adopt_trajectory.py"


rule train_all:
    input:
        outputs(rules.train, rules.adopt_trajectory),
