from lcaflow.data import load_official, write_data_file
from lcaflow.progress import stage

with stage("data", snakemake.log[0]):
    name = snakemake.wildcards.dataset
    p = snakemake.params
    write_data_file(snakemake.output[0], name, load_official(name, p.root, p.fashion_mnist_dir, p.download))
