"""Token groups of the character transformer for lcaflow (runs.<run>.example_groups): what each predicted
character is. Called once per split with its stacked inputs and targets (N, 64) token ids (data.py: printable
ASCII at 0..94, newline 95); returns one label per target token, shaped like the targets."""

import numpy as np


def kinds(inputs, targets):
    """letter, space, punctuation, digit, newline, and the character after a newline (a line start)."""
    t = targets.numpy()
    ascii_ = t + 32
    kind = np.full(t.shape, "punctuation", dtype=object)
    kind[((ascii_ >= 65) & (ascii_ <= 90)) | ((ascii_ >= 97) & (ascii_ <= 122))] = "letter"
    kind[(ascii_ >= 48) & (ascii_ <= 57)] = "digit"
    kind[t == 0] = "space"
    kind[t == 95] = "newline"
    previous = inputs.numpy()  # the character before each target: targets are the inputs shifted by one
    kind[(previous == 95) & (t != 95)] = "line start"
    return kind.astype(str)
