from lcaflow.config import validate_config
from lcaflow.data import load_official, load_user_dataset, write_data_file
from lcaflow.progress import stage

with stage("data", snakemake.log[0]):
    name, source = snakemake.wildcards.dataset, snakemake.params.source
    if source is None:
        # Where the files come from does not change them, so these settings are read here, not as params.
        data = validate_config(snakemake.config)["data"]
        write_data_file(snakemake.output[0], name, load_official(name, data["root"], data["fashion_mnist_dir"], data["download"]))
    else:
        ref, args = source
        write_data_file(snakemake.output[0], ref, load_user_dataset(ref, args, f"config: dataset {ref}"), raw_inputs=True)
