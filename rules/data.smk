rule data:
    output:
        f"{RESULTS}/data/{{dataset}}.h5",
    log:
        f"{RESULTS}/logs/data/{{dataset}}.log",
    conda:
        "../envs/lca.yaml"
    script:
        "scripts/data.py"


rule data_all:
    input:
        sorted({f"{RESULTS}/data/{r['dataset']}.h5" for r in RUNS.values()}),
