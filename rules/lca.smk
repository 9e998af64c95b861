rule gradients:
    input:
        trajectory=f"{RESULTS}/runs/{{run}}/trajectory.h5",
        data=data_file,
        sources=run_sources,
    output:
        f"{RESULTS}/runs/{{run}}/chunks/{{chunk}}.h5",
    log:
        f"{RESULTS}/logs/gradients/{{run}}/{{chunk}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/gradients/{{run}}/{{chunk}}.tsv"
    conda:
        "../envs/lca.yaml"
    threads: THREADS
    resources:
        gpu=gpus_wanted,
        mem_mb=gradient_mem_mb,
        runtime=gradient_runtime,
    params:
        run=run_config,
        lca=LCA_GRADIENTS,
        threads=THREADS,
    script:
        "scripts/gradients.py"


rule assemble:
    input:
        trajectory=f"{RESULTS}/runs/{{run}}/trajectory.h5",
        chunks=chunk_files,
    output:
        lca=f"{RESULTS}/runs/{{run}}/lca.h5",
        grounding=f"{RESULTS}/runs/{{run}}/grounding.json",
    log:
        f"{RESULTS}/logs/assemble/{{run}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/assemble/{{run}}.tsv"
    conda:
        "../envs/lca.yaml"
    params:
        run=run_config,
        lca=LCA_ASSEMBLE,
    script:
        "scripts/assemble.py"


rule gradients_all:
    input:
        chunk_outputs(),


rule lca_all:
    input:
        lca_outputs(),
