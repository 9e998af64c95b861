"""Example groups of Fashion-MNIST for lcaflow (runs.<run>.example_groups): what each image is worn on.

Called once per split with the split's stacked images (N, 1, 28, 28) and class indices (N,); returns one
label per image. The classes are T-shirt/top, Trouser, Pullover, Dress, Coat, Sandal, Shirt, Sneaker,
Bag, Ankle boot."""

import numpy as np

WORN_ON = np.array(["upper body", "legs", "upper body", "body", "upper body", "feet", "upper body", "feet", "carried", "feet"])


def worn_on(inputs, targets):
    return WORN_ON[targets.numpy()]
