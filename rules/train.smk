rule train:
    input:
        data=data_file,
    output:
        f"{RESULTS}/runs/{{run}}/trajectory.h5",
    log:
        f"{RESULTS}/logs/train/{{run}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train/{{run}}.tsv"
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


rule train_all:
    input:
        train_outputs(),
