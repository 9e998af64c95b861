from pathlib import Path

from lcaflow.progress import stage
from lcaflow.summary import summarize

with stage("summary", snakemake.log[0]):
    summarize(snakemake.input[0], str(Path(snakemake.output.json).parent))
