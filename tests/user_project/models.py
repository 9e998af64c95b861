"""Two models of a user: a tiny character model (tokens in, next-token logits out) and a small ConvNet
with batch norm for 28x28 images."""

import torch
from torch import nn


class TinyCharModel(nn.Module):
    def __init__(self, vocab: int, width: int, context: int):
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.position = nn.Parameter(torch.zeros(context, width))
        self.mix = nn.Linear(width, width)
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab)

    def forward(self, tokens):
        h = self.embed(tokens) + self.position[: tokens.shape[1]]
        h = h + torch.relu(self.mix(h)).cumsum(1) / torch.arange(1, tokens.shape[1] + 1).view(1, -1, 1)  # causal mean
        return self.head(self.norm(h))


def char_model(vocab: int, width: int = 16, context: int = 16):
    return TinyCharModel(vocab, width, context)


def small_convnet(channels: int = 4, classes: int = 10):
    return nn.Sequential(
        nn.Conv2d(1, channels, 5, stride=2),
        nn.BatchNorm2d(channels),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(channels * 12 * 12, classes),
    )


def tiny_gpt2(vocab: int = 96, context: int = 32):
    """A 2-layer GPT-2 of 32 dimensions built from its config (no download), as the Hugging Face Trainer
    trains it: the workflow takes the logits of its ModelOutput. Dropout off: L(theta) is deterministic."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=vocab, n_positions=context, n_embd=32, n_layer=2, n_head=2, bos_token_id=0, eos_token_id=0,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, use_cache=False,
    )  # fmt: skip
    return GPT2LMHeadModel(config)
