"""A GPT-2 from Hugging Face `transformers`, built from a tiny config (no download): 2 blocks of 2 heads,
64 dimensions, over the 96 character tokens of examples/char_transformer/data.py.

The workflow calls `architecture` and gets the Hugging Face model itself: it feeds it the token windows
(`model(input_ids)`), takes the `logits` of its `CausalLMOutputWithCrossAttentions`, and evaluates the tied
`lm_head.weight` (the same tensor as `transformer.wte.weight`) once, under its first name."""

from transformers import GPT2Config, GPT2LMHeadModel


def architecture(vocab: int = 96, context: int = 64, n_embd: int = 64, n_layer: int = 2, n_head: int = 2):
    """The Trainer trains rows of context + 1 tokens (it shifts the labels itself): n_positions = context + 1.
    Dropout off, so that L(theta) is a function of theta alone (attention reads attn_pdrop itself)."""
    config = GPT2Config(
        vocab_size=vocab, n_positions=context + 1, n_embd=n_embd, n_layer=n_layer, n_head=n_head,
        bos_token_id=vocab - 1, eos_token_id=vocab - 1, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        use_cache=False,
    )  # fmt: skip
    return GPT2LMHeadModel(config)
