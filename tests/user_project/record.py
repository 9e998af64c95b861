"""My own training loop, recorded for LCA."""

import torch
from datasets import characters
from models import char_model

import lcaflow

torch.manual_seed(0)
train, _ = characters()
model = char_model(vocab=96)
optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
loss_fn = torch.nn.CrossEntropyLoss()
with lcaflow.TrajectoryRecorder("chars.h5", model) as recorder:
    for step in range(12):
        x, y = train.tensors[0][step % 6 * 16 : step % 6 * 16 + 16], train.tensors[1][step % 6 * 16 : step % 6 * 16 + 16]
        loss = loss_fn(model(x).flatten(0, 1), y.flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        recorder.step(loss)
