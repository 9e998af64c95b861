# LCA: one gradient job per block of iterations (GPU when present), then one assembly per run.


rule gradients:
    input:
        trajectory=RUN.trajectory,
        data=data_file,
        sources=run_sources,
    output:
        RUN.chunk("{chunk}"),
    log:
        PATHS.log("gradients", "{run}", "{chunk}"),
    benchmark:
        PATHS.timing("gradients", "{run}", "{chunk}")
    conda:
        "../envs/lca.yaml"
    threads: THREADS
    resources:
        gpu=gpus_wanted,
        cpus_per_gpu=cpus_per_gpu,
        mem_mb=mem_mb("gradients"),
        runtime=runtime("gradients"),
        execution=LCA_EXECUTION,
    params:
        run=run_params,
        lca=LCA_PARAMS["gradients"],
        threads=THREADS,
    script:
        "scripts/gradients.py"


rule assemble:
    input:
        trajectory=RUN.trajectory,
        chunks=chunk_files,
    output:
        lca=RUN.lca,
        grounding=RUN.grounding,
    log:
        PATHS.log("assemble", "{run}"),
    benchmark:
        PATHS.timing("assemble", "{run}")
    conda:
        "../envs/lca.yaml"
    resources:
        mem_mb=mem_mb("analysis"),
        runtime=runtime("assemble"),
    params:
        run=run_params,
        lca=LCA_PARAMS["assemble"],
    script:
        "scripts/assemble.py"


rule gradients_all:
    input:
        [chunk for run in RUNS for chunk in chunks_of(run)],


rule lca_all:
    input:
        outputs(rules.assemble),
