"""Train the character transformer with a plain PyTorch loop and record its trajectory for LCA.

    python examples/char_transformer/train.py
    snakemake --cores all --configfile configs/examples/char_transformer.yaml

The only lcaflow line is the recorder; the model and data are the files the config names."""

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from data import decode, fortunes  # noqa: E402
from model import build  # noqa: E402

import lcaflow  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--out", default="results/examples/char_transformer/recorded.h5")
parser.add_argument("--steps", type=int, default=300)
parser.add_argument("--batch-size", type=int, default=32)
parser.add_argument("--lr", type=float, default=3e-3)
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--train-windows", type=int, default=1000, help="training windows (the config's dataset_args must agree)")
args = parser.parse_args()

torch.manual_seed(args.seed)
torch.set_num_threads(2)
train, test = fortunes(train_windows=args.train_windows)  # the config gives the same arguments
x, y = train.tensors
model = build()
optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
order = torch.Generator().manual_seed(args.seed)

with lcaflow.TrajectoryRecorder(args.out, model, iterations=args.steps) as recorder:
    for step in range(args.steps):
        batch = torch.randint(len(x), (args.batch_size,), generator=order)
        logits = model(x[batch])
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), y[batch].flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        recorder.step(loss)
        if step % 50 == 0 or step == args.steps - 1:
            print(f"step {step}: minibatch loss {loss.item():.3f}", flush=True)

with torch.no_grad():  # a glimpse of what it learned: greedy continuation of a held-out prompt
    tokens = test.tensors[0][:1, :32]
    for _ in range(32):
        tokens = torch.cat([tokens, model(tokens[:, -64:])[:, -1].argmax(-1, keepdim=True)], 1)
print("sample:", repr(decode(tokens[0].tolist())))
print(f"recorded {args.steps} steps in {args.out}")
