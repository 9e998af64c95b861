# The paper's quantitative claims checked against every run and experiment of the config.


rule claims:
    input:
        unpack(claims_inputs),
    output:
        md=report(
            PATHS.claims_md,
            caption="../report/tables/claims.rst",
            category="Claims",
        ),
        tsv=PATHS.claims_tsv,
    log:
        PATHS.log("claims"),
    conda:
        "../envs/lca.yaml"
    params:
        runs={name: settings.run_params(run) for name, run in RUNS.items()},
        experiments=EXPERIMENTS,
    script:
        "scripts/claims.py"
