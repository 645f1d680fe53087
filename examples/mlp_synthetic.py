"""MNIST-shaped MLP training (784 inputs, 10 classes) on synthetic data; nothing is downloaded.

    mpiexec -n 2 python examples/mlp_synthetic.py [--n 20000] [--epochs 3]

Rank 0 writes 784-feature, 10-class train/test files whose labels come from a fixed
random ReLU teacher network; then every rank runs ``mpidml.train`` with
``--model mlp --hidden 256,128`` (the same as the command line
``python -m mpidml.train --data train.h5 --test test.h5 --model mlp --hidden 256,128``).
"""

import argparse
import os
import tempfile

import h5py
import numpy as np
from mpi4py import MPI

from mpidml.train import TrainConfig, train

D, K = 784, 10


def write_teacher_set(path, n, seed, stream):
    """Gaussian features, labels = arg-max of a fixed random ReLU teacher (784 → 64 → 10),
    shifted so that the ten classes are about equally frequent."""
    teacher = np.random.default_rng(seed)
    W1 = teacher.standard_normal((D, 64)) / np.sqrt(D)
    W2 = teacher.standard_normal((64, K))
    shift = np.median(np.maximum(teacher.standard_normal((5000, D)) @ W1, 0) @ W2, axis=0)
    rng = np.random.default_rng([seed, stream])
    X = rng.standard_normal((n, D), dtype=np.float32)
    y = (np.maximum(X @ W1, 0) @ W2 - shift).argmax(axis=1)
    tmp = path + ".tmp"
    with h5py.File(tmp, "w") as f:
        f["X"] = X
        f["y"] = y.astype(np.int32)
    os.replace(tmp, path)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=20_000)
    p.add_argument("--epochs", type=int, default=3)
    args = p.parse_args()
    comm = MPI.COMM_WORLD
    folder = tempfile.gettempdir()
    train_path = os.path.join(folder, f"mpidml-mlp-example-{args.n}-train.h5")
    test_path = os.path.join(folder, f"mpidml-mlp-example-{args.n}-test.h5")
    if comm.Get_rank() == 0:
        write_teacher_set(train_path, args.n, seed=7, stream=0)
        write_teacher_set(test_path, max(1000, args.n // 5), seed=7, stream=1)
    comm.Barrier()
    cfg = TrainConfig(data=train_path, test=test_path, model="mlp", hidden="256,128", epochs=args.epochs,
                      batch_size=128, lr=0.05, optimizer="momentum", momentum=0.9, l2=1e-5)
    summary = train(cfg, comm)
    if comm.Get_rank() == 0:
        print(f"chance {1 / K:.2f}; test accuracy {summary['test_accuracy']:.4f}")


if __name__ == "__main__":
    main()
