"""My Hugging Face Trainer run, recorded for LCA with the callback (docs/integrations.md)."""

import torch
from datasets import characters
from models import tiny_gpt2
from transformers import Trainer, TrainingArguments

from lcaflow.integrations.hf import TrajectoryCallback

torch.manual_seed(0)
train, _ = characters()
# the Trainer shifts the labels itself: each row is a window and its next character, so that the model's
# loss is the workflow's token_cross_entropy on (window, next characters)
rows = [{"input_ids": torch.cat([x, y[-1:]]), "labels": torch.cat([x, y[-1:]])} for x, y in zip(*train.tensors)]
args = TrainingArguments(
    output_dir="hf_out", max_steps=6, per_device_train_batch_size=8, gradient_accumulation_steps=2,
    learning_rate=3e-3, report_to=[], logging_strategy="no", use_cpu=True, disable_tqdm=True,
    save_strategy="steps", save_steps=2, save_only_model=True,  # hf_out/checkpoint-2, -4, -6: a checkpoint folder
)  # fmt: skip
Trainer(model=tiny_gpt2(), args=args, train_dataset=rows, callbacks=[TrajectoryCallback("gpt.h5")]).train()
