from lcaflow.config import validate_config
from lcaflow.data import load_official, write_data_file
from lcaflow.progress import stage

with stage("data", snakemake.log[0]):
    # Where the files come from does not change them, so these settings are read here, not as params.
    data = validate_config(snakemake.config)["data"]
    name = snakemake.wildcards.dataset
    write_data_file(snakemake.output[0], name, load_official(name, data["root"], data["fashion_mnist_dir"], data["download"]))
