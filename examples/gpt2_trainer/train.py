"""Train a tiny GPT-2 with the Hugging Face Trainer, recorded two ways in one run for LCA.

    python examples/gpt2_trainer/train.py
    snakemake --cores all --configfile=configs/examples/gpt2_trainer.yaml               # every step (the callback)
    snakemake --cores all --configfile=configs/examples/gpt2_trainer_checkpoints.yaml   # the Trainer's checkpoints

(a) `lcaflow.integrations.hf.TrajectoryCallback` records theta after every optimizer step;
(b) the Trainer's own checkpoints (`save_steps`), safetensors `save_pretrained` folders `checkpoint-N`.
The Trainer saves no checkpoint before its first step: theta_0 is saved here as `checkpoint-0`, so that the
checkpoint path starts where the recording does. The model and data are the files the configs name."""

import argparse
import sys
from pathlib import Path

import torch
from transformers import Trainer, TrainingArguments

sys.path.insert(0, str(Path(__file__).parent))
from data import decode, fortunes, rows  # noqa: E402
from model import architecture  # noqa: E402

from lcaflow.integrations.hf import TrajectoryCallback  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--out", default="results/examples/gpt2_trainer")
parser.add_argument("--steps", type=int, default=150)
parser.add_argument("--save-steps", type=int, default=10)
parser.add_argument("--batch-size", type=int, default=32)
parser.add_argument("--lr", type=float, default=3e-3)
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()

out = Path(args.out)
torch.manual_seed(args.seed)
torch.set_num_threads(1)
train, test = fortunes()  # the configs give the same arguments (the defaults)
model = architecture()
model.save_pretrained(out / "hf_out" / "checkpoint-0")  # theta_0: the Trainer saves from its first save_steps on
training = TrainingArguments(
    output_dir=str(out / "hf_out"), max_steps=args.steps, per_device_train_batch_size=args.batch_size,
    learning_rate=args.lr, seed=args.seed, use_cpu=True, report_to=[], disable_tqdm=True,
    logging_strategy="steps", logging_steps=25,
    save_strategy="steps", save_steps=args.save_steps, save_only_model=True,  # checkpoint-10, -20, ...: safetensors
)  # fmt: skip
trainer = Trainer(model=model, args=training, train_dataset=rows(train), callbacks=[TrajectoryCallback(out / "recorded.h5")])
trainer.train()

model.eval()
with torch.no_grad():  # a glimpse of what it learned: greedy continuation of a held-out prompt
    tokens = test.tensors[0][:1, :32]
    for _ in range(32):
        tokens = torch.cat([tokens, model(tokens[:, -64:]).logits[:, -1].argmax(-1, keepdim=True)], 1)
print("sample:", repr(decode(tokens[0].tolist())))
print(f"recorded {args.steps} steps in {out / 'recorded.h5'}, checkpoints every {args.save_steps} in {out / 'hf_out'}")
