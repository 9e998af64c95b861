"""What a run costs, from its config alone: its size (size), the bytes of every file (disk), the memory of each
job (memory) and the time of each job (time: from a calibration of the run's model on this machine
(calibration) where one was made, from FLOP rates otherwise).

One model serves both the cost plan (`snakemake plan`, lcaflow.plan) and the resources each job requests
(rules/common.smk: memory, runtime, the disk check before training), so that the plan predicts what the
jobs ask for."""
