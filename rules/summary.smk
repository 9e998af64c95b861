# The first look at each run, as soon as it is assembled: its headline numbers and an overview figure.


rule summary:
    input:
        RUN.lca,
    output:
        json=RUN.summary("summary.json"),
        figure=report(
            RUN.summary("overview.png"),
            caption="../report/overview.rst",
            category="Runs",
            subcategory="{run}",
        ),
    log:
        PATHS.log("summary", "{run}"),
    conda:
        "../envs/lca.yaml"
    resources:
        mem_mb=mem_mb("analysis"),
        runtime=runtime("analysis"),
    script:
        "scripts/summary.py"


rule summary_all:
    input:
        outputs(rules.summary),
