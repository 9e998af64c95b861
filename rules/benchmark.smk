# The speed benchmark (benchmarks/bench_lca.py) as a target outside `all`:
#   snakemake --cores all benchmark
# Every network of the paper on the device that `auto` picks (a GPU when present), beside the paper's
# S8 timings. Trains its own short trajectories; nothing else in results/ is touched.


rule benchmark:
    output:
        table=PATHS.speed_table,
        json=PATHS.speed_json,
    log:
        PATHS.log("benchmark"),
    conda:
        "../envs/lca.yaml"
    threads: THREADS
    resources:
        gpu=1,
        mem_mb=16000,
        runtime="3h",
    params:
        script=workflow.source_path("../benchmarks/bench_lca.py"),
    shell:
        'python {params.script} --threads {threads} --out "$(dirname {output.table})" > {log} 2>&1'
