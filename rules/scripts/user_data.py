from lcaflow.data import load_user_dataset, write_data_file
from lcaflow.progress import stage

with stage("user_data", snakemake.log[0]):
    ref, args = snakemake.params.source
    write_data_file(snakemake.output[0], ref, load_user_dataset(ref, args, f"config: dataset {ref}"), raw_inputs=True)
