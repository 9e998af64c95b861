# Data: each dataset's official train and test sets in one file, results/data/{dataset}.h5.


rule data:
    output:
        PATHS.data("{dataset}"),
    log:
        PATHS.log("data", "{dataset}"),
    wildcard_constraints:
        dataset=one_of(BUILTIN_DATASETS),
    conda:
        "../envs/lca.yaml"
    resources:
        location=DATA_LOCATION,
    script:
        "scripts/data.py"


# A dataset given by import path: its items stacked into a data file. The file of the callable is an
# input, so editing it remakes the data file; the key (user_<name>_<hash>) covers path and arguments.
rule user_data:
    input:
        dataset_source,
    output:
        PATHS.data("{dataset}"),
    log:
        PATHS.log("data", "{dataset}"),
    wildcard_constraints:
        dataset=one_of(sorted(set(DATASETS) - set(BUILTIN_DATASETS))),
    conda:
        "../envs/lca.yaml"
    params:
        source=lambda w: DATASETS[w.dataset],
    script:
        "scripts/user_data.py"


rule data_all:
    input:
        sorted(PATHS.data(key) for key in DATASETS),
