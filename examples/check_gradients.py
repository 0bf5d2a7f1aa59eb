"""Check every built-in layer's backward pass against finite differences and print the errors.

python examples/check_gradients.py
"""

from npcnn.gradcheck import check_layer
from npcnn.layers import BatchNorm, Conv2D, Dense, Dropout, Flatten, MaxPool2D, ReLU


def main() -> None:
    """Check every built-in layer and print the errors."""
    cases = [
        ("Conv2D 3->4, 3x3, same", Conv2D(3, 4, 3, padding="same"), (2, 3, 6, 6)),
        ("Conv2D 2->3, 3x3, stride 2, pad 1", Conv2D(2, 3, 3, stride=2, padding=1), (2, 2, 7, 7)),
        ("Conv2D 1->2, 5x5, valid", Conv2D(1, 2, 5), (3, 1, 8, 7)),
        ("MaxPool2D 2", MaxPool2D(2), (2, 3, 6, 6)),
        ("MaxPool2D 3, stride 2", MaxPool2D(3, stride=2), (2, 2, 7, 7)),
        ("Dense 7->5", Dense(7, 5), (4, 7)),
        ("ReLU", ReLU(), (3, 2, 4, 4)),
        ("Flatten", Flatten(), (2, 3, 4, 5)),
        ("Dropout 0.4", Dropout(0.4), (5, 12)),
        ("BatchNorm (images)", BatchNorm(3), (4, 3, 5, 5)),
        ("BatchNorm (vectors)", BatchNorm(6), (8, 6)),
    ]
    print(f"{'layer':36s} max relative error (input and each parameter)")
    for title, layer, shape in cases:
        errors = check_layer(layer, shape)
        print(f"{title:36s} " + "  ".join(f"{k}: {v:.1e}" for k, v in errors.items()))


if __name__ == "__main__":
    main()
