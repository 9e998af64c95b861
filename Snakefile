# Loss Change Allocation (Lan et al., NeurIPS 2019) as a file-based DAG:
# data -> train -> gradients (one job per block of iterations) -> assemble -> summary
from snakemake.utils import min_version

min_version("9.0")


# A --configfile replaces config.yaml instead of merging into it: merged `runs` would silently
# add the default 880-iteration run to every other config. --config key=value still overrides.
if not workflow.overwrite_configfiles:

    configfile: "config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/train.smk"
include: "rules/lca.smk"
include: "rules/summary.smk"


rule all:
    default_target: True
    input:
        summary_outputs(),
