# The paper's quantitative claims checked against every run and experiment of the config.


rule claims:
    input:
        claims_inputs,
    output:
        md=report(
            f"{RESULTS}/claims.md",
            caption="../report/tables/claims.rst",
            category="Claims",
        ),
        tsv=f"{RESULTS}/claims.tsv",
    log:
        f"{RESULTS}/logs/claims.log",
    conda:
        "../envs/lca.yaml"
    params:
        runs={name: without_later_defaults(run) for name, run in RUNS.items()},
        experiments=EXPERIMENTS,
    script:
        "scripts/claims.py"
