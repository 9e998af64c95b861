from lcaflow.data import load_official, write_data_file
from lcaflow.progress import stage
from lcaflow.settings import from_resources

sm = snakemake  # noqa: F821 (injected by Snakemake)

with stage("data", sm.log[0]):
    # Where the files come from does not change them: resources, not params (a change reruns nothing).
    where = from_resources(sm.resources.location)
    name = sm.wildcards.dataset
    write_data_file(sm.output[0], name, load_official(name, where["root"], where["fashion_mnist_dir"], where["download"]))
