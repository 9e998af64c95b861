import torch

from lcaflow.gpus import claim_gpu
from lcaflow.gradients import compute_chunk
from lcaflow.progress import stage
from lcaflow.settings import from_resources

sm = snakemake  # noqa: F821 (injected by Snakemake)

with stage("gradients", sm.log[0]):
    claim_gpu(sm.params.run["device"])  # a GPU of this job's own, before the first CUDA call (lcaflow/gpus.py)
    torch.set_num_threads(sm.params.threads)  # configured, not scaled to --cores: it fixes the float sums
    lca = {**sm.params.lca, **from_resources(sm.resources.execution)}  # the numbers' settings and the speed settings
    compute_chunk(sm.wildcards.run, sm.params.run, lca, int(sm.wildcards.chunk), sm.input.trajectory, sm.input.data, sm.output[0])
