from pathlib import Path

from lcaflow.cost.disk import check_free_space
from lcaflow.progress import stage
from lcaflow.settings import from_resources
from lcaflow.training import adopt_trajectory

sm = snakemake  # noqa: F821 (injected by Snakemake)

with stage("adopt_trajectory", sm.log[0]):
    i = sm.input
    check_free_space(sm.wildcards.run, from_resources(sm.resources.run_disk), sm.params.results, Path(i.data).stat().st_size)
    adopt_trajectory(sm.wildcards.run, sm.params.run, i.recorded, i.data, sm.output[0])
