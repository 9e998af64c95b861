rule data:
    input:
        dataset_source,
    output:
        f"{RESULTS}/data/{{dataset}}.h5",
    log:
        f"{RESULTS}/logs/data/{{dataset}}.log",
    conda:
        "../envs/lca.yaml"
    params:
        # a dataset given by import path and its arguments (built-in datasets: where they come from
        # does not change them, so those settings are read in the script, not params)
        source=lambda w: (
            None if is_builtin_dataset(DATASETS[w.dataset][0]) else DATASETS[w.dataset]
        ),
    script:
        "scripts/data.py"


rule data_all:
    input:
        sorted(f"{RESULTS}/data/{key}.h5" for key in DATASETS),
