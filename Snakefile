# Loss Change Allocation (Lan et al., NeurIPS 2019) as a file-based DAG:
# data -> train -> gradients (one job per block of iterations) -> assemble -> summary,
# analyses (tables) -> figures, and `snakemake --report` over the figures and tables
from snakemake.utils import min_version

min_version("9.0")


# A --configfile replaces config.yaml instead of merging into it: merged `runs` would silently
# add the default 880-iteration run to every other config. --config key=value still overrides.
if not workflow.overwrite_configfiles:

    configfile: "config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"


# One GPU per job on this machine (src/lcaflow/gpus.py, docs/cluster.md): a local run caps concurrent
# GPU jobs at the GPUs it sees (a --resources gpu=N of the user's wins) and gives each job its own GPU;
# under a cluster executor it does nothing.
from lcaflow.gpus import share_gpus

share_gpus(workflow, CONFIG["jobs_per_gpu"])


# Downloads need the internet, which cluster nodes often lack; the targets do no work; the plan times
# the models on the machine that runs snakemake, before anything is submitted.
localrules:
    all,
    data,
    data_all,
    train_all,
    gradients_all,
    lca_all,
    summary_all,
    analysis_all,
    figures_all,
    claims,
    explorer,
    plan,


include: "rules/data.smk"
include: "rules/train.smk"
include: "rules/lca.smk"
include: "rules/summary.smk"
include: "rules/analysis.smk"
include: "rules/figures.smk"
include: "rules/claims.smk"
include: "rules/explorer.smk"
include: "rules/benchmark.smk"
include: "rules/plan.smk"


rule all:
    default_target: True
    input:
        rules.summary_all.input,
        rules.analysis_all.input,
        rules.figures_all.input,
        rules.claims.output.md,
        rules.explorer.input,
