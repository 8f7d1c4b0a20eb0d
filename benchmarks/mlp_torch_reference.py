"""PyTorch reference timing for examples/mnist_mlp.py: the same network, data, batch size and
optimizer, on the CPU.

    python benchmarks/mlp_torch_reference.py                 # 2 epochs of PyTorch, 2 threads
    python benchmarks/mlp_torch_reference.py --with-condnn   # condnn and PyTorch epochs in turn
    python benchmarks/mlp_torch_reference.py --epochs 20     # the full run, with accuracy

With ``--with-condnn`` the two frameworks train alternately, one epoch each, so that both see
the same load on a shared machine.  Prints a table of seconds per epoch and accuracy.  PyTorch
is not a dependency of condnn: without it the script says so and exits with status 0.
"""
import argparse
import os
import sys
import time
from typing import Dict, List

import numpy as np

try:
    import torch
    from torch import nn
except ImportError:
    torch = None

import condnn
from condnn.datasets import load_mnist, train_val_split
from condnn.optim import SGD, CosineDecay

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples"))
from mnist_mlp import MLP  # noqa: E402


def torch_trainer(args: argparse.Namespace, total_steps: int):
    """The PyTorch twin of MLP: (train_step(x, y), accuracy(x, y))."""
    torch.manual_seed(args.seed)
    model = nn.Sequential(nn.Linear(784, args.hidden), nn.ReLU(), nn.Dropout(args.dropout),
                          nn.Linear(args.hidden, args.hidden), nn.ReLU(),
                          nn.Dropout(args.dropout), nn.Linear(args.hidden, 10))
    for layer in list(model)[:4]:
        if isinstance(layer, nn.Linear):
            nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
            nn.init.zeros_(layer.bias)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, nesterov=True,
                                weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, total_steps)
    loss_function = nn.CrossEntropyLoss()

    def train_step(xb: np.ndarray, yb: np.ndarray) -> None:
        optimizer.zero_grad(set_to_none=False)
        loss_function(model(torch.from_numpy(xb)), torch.from_numpy(yb)).backward()
        optimizer.step()
        schedule.step()

    def accuracy(x: np.ndarray, y: np.ndarray) -> float:
        model.eval()
        with torch.no_grad():
            predictions = torch.cat([model(torch.from_numpy(x[i:i + 1000])).argmax(dim=1)
                                     for i in range(0, len(x), 1000)])
        model.train()
        return float((predictions.numpy() == y).mean())

    return train_step, accuracy


def condnn_trainer(args: argparse.Namespace, total_steps: int):
    """examples/mnist_mlp.py's model and optimizer: (train_step(x, y), accuracy(x, y))."""
    model = MLP(n_hidden=args.hidden, dropout=args.dropout, seed=args.seed)
    optimizer = SGD(model, lr=CosineDecay(args.lr, total_steps=total_steps), momentum=0.9,
                    nesterov=True, weight_decay=1e-4)

    def train_step(xb: np.ndarray, yb: np.ndarray) -> None:
        logits, backprop = model(xb)
        backprop(condnn.softmax_cross_entropy(logits, yb).backprop())
        optimizer.step()

    def accuracy(x: np.ndarray, y: np.ndarray) -> float:
        predictions = np.concatenate([model(x[i:i + 1000], train=False)[0].argmax(axis=1)
                                      for i in range(0, len(x), 1000)])
        return float((predictions == y).mean())

    return train_step, accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--dropout", type=float, default=0.2)
    parser.add_argument("--threads", type=int, default=2, help="PyTorch's intra-op threads "
                        "(condnn's BLAS takes OPENBLAS_NUM_THREADS, default all cores)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--with-condnn", action="store_true",
                        help="also train condnn's model, alternating epochs")
    args = parser.parse_args()
    if torch is None:
        print("PyTorch is not installed: this reference timing needs it "
              "(pip install torch); skipping.")
        return

    torch.set_num_threads(args.threads)
    data = load_mnist()
    x_train, y_train, x_val, y_val = train_val_split(data.x_train, data.y_train, 5000,
                                                     seed=args.seed)
    total_steps = args.epochs * -(-len(y_train) // args.batch_size)
    trainers: Dict[str, tuple] = {"torch": torch_trainer(args, total_steps)}
    if args.with_condnn:
        trainers = {"condnn": condnn_trainer(args, total_steps), **trainers}
    orders = {name: np.random.default_rng(args.seed + 1) for name in trainers}
    seconds: Dict[str, List[float]] = {name: [] for name in trainers}
    print(f"torch {torch.__version__} ({torch.get_num_threads()} threads), condnn "
          f"{condnn.__version__}; batch {args.batch_size}, {args.hidden} hidden units")
    print("epoch  " + "  ".join(f"{name + ' s':>9}  {name + ' val':>10}" for name in trainers))
    for epoch in range(1, args.epochs + 1):
        cells = []
        for name, (train_step, accuracy) in trainers.items():
            start = time.perf_counter()
            order = orders[name].permutation(len(y_train))
            for first in range(0, len(order), args.batch_size):
                batch = order[first:first + args.batch_size]
                train_step(x_train[batch], y_train[batch])
            seconds[name].append(time.perf_counter() - start)
            cells.append(f"{seconds[name][-1]:>9.2f}  {100 * accuracy(x_val, y_val):>9.2f}%")
        print(f"{epoch:>5}  " + "  ".join(cells), flush=True)
    for name, (_, accuracy) in trainers.items():
        print(f"{name}: median {np.median(seconds[name]):.2f} s per epoch, test accuracy "
              f"{100 * accuracy(data.x_test, data.y_test):.2f}%")
    if args.with_condnn:
        ratio = np.median(seconds["condnn"]) / np.median(seconds["torch"])
        print(f"condnn / torch time per epoch: {ratio:.2f}")


if __name__ == "__main__":
    main()
