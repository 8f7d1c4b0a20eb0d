"""Trains a 784-1024-1024-10 ReLU network on the bundled MNIST digits.

    python examples/mnist_mlp.py                 # 20 epochs, best checkpoint in runs/mnist_mlp
    python examples/mnist_mlp.py --epochs 2 --hidden 256

Holds out 5,000 training images for validation, keeps the checkpoint of the epoch with
the best validation accuracy, and reports the test accuracy of that checkpoint.  The
checkpoint can be loaded without this script's arguments: ``condnn.load(path).model``
(with this module imported, so that the class is registered).
"""
import argparse
import os
import time
from typing import Dict, List, Optional, Tuple

import numpy as np
from tqdm import tqdm

import condnn
from condnn.datasets import load_mnist, minibatches, train_val_split
from condnn.layers import Dense, Dropout, ReLU, Sequential
from condnn.optim import SGD, CosineDecay


class MLP(condnn.Model):
    """Two ReLU hidden layers of ``n_hidden`` units, with dropout after each."""

    def __init__(self, n_hidden: int = 1024, dropout: float = 0.2, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.net = Sequential(
            # The input is data, not a layer's output: no gradient is needed for it.
            fc1=Dense(784, n_hidden, init=condnn.he_normal, rng=rng, input_grad=False),
            relu1=ReLU(), drop1=Dropout(dropout, rng=rng),
            fc2=Dense(n_hidden, n_hidden, init=condnn.he_normal, rng=rng),
            relu2=ReLU(), drop2=Dropout(dropout, rng=rng),
            fc3=Dense(n_hidden, 10, rng=rng))

    def forward(self, x: np.ndarray, train: bool):
        return self.net(x, train)


def evaluate(model: condnn.Model, x: np.ndarray, y: np.ndarray,
             batch_size: int = 1000) -> Tuple[float, float]:
    """Mean loss and accuracy of ``model`` on (x, y), in evaluation mode."""
    total_loss, correct = 0.0, 0
    for xb, yb in minibatches(x, y, batch_size):
        logits, _ = model(xb, train=False)
        total_loss += condnn.softmax_cross_entropy(logits, yb).loss * len(yb)
        correct += int((logits.argmax(axis=1) == yb).sum())
    return total_loss / len(y), correct / len(y)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.05, help="initial learning rate "
                        "(cosine decay to 0 over the run)")
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--weight-decay", type=float, default=1e-4, help="L2 weight decay")
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--dropout", type=float, default=0.2)
    parser.add_argument("--train-size", type=int, default=None,
                        help="use only this many training images (for quick runs)")
    parser.add_argument("--val-size", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=os.path.join("runs", "mnist_mlp"),
                        help="directory of the best checkpoint")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> Dict[str, object]:
    args = parse_args(argv)
    data = load_mnist()
    x, y = data.x_train, data.y_train
    if args.train_size is not None:
        x, y = x[:args.train_size + args.val_size], y[:args.train_size + args.val_size]
    x_train, y_train, x_val, y_val = train_val_split(x, y, args.val_size, seed=args.seed)

    model = MLP(n_hidden=args.hidden, dropout=args.dropout, seed=args.seed)
    steps_per_epoch = -(-len(y_train) // args.batch_size)
    optimizer = SGD(model, lr=CosineDecay(args.lr, total_steps=args.epochs * steps_per_epoch),
                    momentum=args.momentum, nesterov=True, weight_decay=args.weight_decay)
    data_rng = np.random.default_rng(args.seed + 1)
    os.makedirs(args.out, exist_ok=True)
    best_path = os.path.join(args.out, "best.h5")
    best_accuracy, epoch_seconds = -1.0, []

    for epoch in range(1, args.epochs + 1):
        start = time.perf_counter()
        batches = tqdm(minibatches(x_train, y_train, args.batch_size, rng=data_rng),
                       total=steps_per_epoch, desc=f"epoch {epoch}", leave=False,
                       disable=args.quiet)
        for xb, yb in batches:
            logits, backprop = model(xb)
            loss, _, loss_backprop = condnn.softmax_cross_entropy(logits, yb)
            backprop(loss_backprop())
            optimizer.step()
            batches.set_postfix(loss=f"{loss:.4f}", refresh=False)
        epoch_seconds.append(time.perf_counter() - start)

        val_loss, val_accuracy = evaluate(model, x_val, y_val)
        if val_accuracy > best_accuracy:
            best_accuracy = val_accuracy
            model.save(best_path, optimizer, step=optimizer.step_count, epoch=epoch,
                       rngs={"data": data_rng}, metadata={"val_accuracy": val_accuracy})
        print(f"epoch {epoch:2d}  {epoch_seconds[-1]:6.2f} s  val loss {val_loss:.4f}  "
              f"val accuracy {100 * val_accuracy:.2f}%", flush=True)

    best = condnn.load(best_path)
    _, test_accuracy = evaluate(best.model, data.x_test, data.y_test)
    print(f"best epoch {best.epoch} (val {100 * best_accuracy:.2f}%): test accuracy "
          f"{100 * test_accuracy:.2f}%; {np.median(epoch_seconds):.2f} s per epoch (median)")
    return {"test_accuracy": test_accuracy, "val_accuracy": best_accuracy,
            "best_epoch": best.epoch, "epoch_seconds": epoch_seconds, "checkpoint": best_path}


if __name__ == "__main__":
    main()
