rule summary:
    input:
        f"{RESULTS}/runs/{{run}}/lca.h5",
    output:
        json=f"{RESULTS}/runs/{{run}}/summary/summary.json",
        iterations=f"{RESULTS}/runs/{{run}}/summary/iterations.tsv",
        layers=f"{RESULTS}/runs/{{run}}/summary/layers.tsv",
        figure=report(
            f"{RESULTS}/runs/{{run}}/summary/overview.png",
            caption="../report/overview.rst",
            category="Runs",
            subcategory="{run}",
        ),
    log:
        f"{RESULTS}/logs/summary/{{run}}.log",
    conda:
        "../envs/lca.yaml"
    script:
        "scripts/summary.py"


rule summary_all:
    input:
        summary_outputs(),
