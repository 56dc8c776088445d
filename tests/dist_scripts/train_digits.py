"""Data-parallel LeNet-5 on the bundled digits: the example of docs/distributed.md.

    mpirun -n 2 python train_digits.py --epochs 2 --checkpoint ckpt.npz [--resume]

Every rank trains on its shard of the training set; rank 0 evaluates, prints
and writes the checkpoint; with --resume every rank reads the checkpoint
and goes on from its epoch.
"""
import argparse
import os

import numpy as np

import minidl
import minidl.distributed as dist
import minidl.nn.functional as F
from minidl.data import DataLoader, Digits, TensorDataset
from minidl.models import lenet5
from minidl.optim import SGD
from minidl.io import load, save

ap = argparse.ArgumentParser()
ap.add_argument("--epochs", type=int, default=2)
ap.add_argument("--batch-size", type=int, default=32, help="per rank")
ap.add_argument("--checkpoint", default="ckpt.npz")
ap.add_argument("--resume", action="store_true")
ap.add_argument("--train-samples", type=int, default=None, help="use the first N only")
args = ap.parse_args()

dist.init()
minidl.manual_seed(0)
model = dist.DistributedDataParallel(lenet5())       # rank 0's weights on every rank
opt = SGD(model.parameters(), lr=0.05, momentum=0.9)
start = 0
if args.resume and os.path.exists(args.checkpoint):  # every rank reads the same file
    ckpt = load(args.checkpoint)
    model.load_state_dict(ckpt["model"])
    opt.load_state_dict(ckpt["optimizer"])
    start = int(ckpt["epoch"])
    dist.print0(f"resumed from epoch {start}")

train, test = Digits("train"), Digits("test")
if args.train_samples:
    train = TensorDataset(train.images[:args.train_samples], train.targets[:args.train_samples])
sampler = dist.DistributedSampler(train, shuffle=True, seed=0)
loader = DataLoader(sampler.shard(train), batch_size=args.batch_size, shuffle=False,
                    seed=1000 + dist.rank())

for epoch in range(start, args.epochs):
    sampler.set_epoch(epoch)                  # this epoch's shard
    loader.epoch = epoch                      # and this epoch's augmentation streams
    model.train()
    total = 0.0
    for x, y in loader:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        model.allreduce_gradients()
        opt.step()
        total += loss.item()
    model.average_buffers()                   # BatchNorm statistics (LeNet has none)
    mean_loss = dist.all_reduce(np.array([total / len(loader)]), average=True)[0]
    if dist.is_main_process():
        model.eval()
        with minidl.no_grad():
            logits = model(minidl.Tensor(test.images)).numpy()
        accuracy = (logits.argmax(1) == test.targets).mean()
        print(f"epoch {epoch + 1}: train loss {mean_loss:.3f}, "
              f"test accuracy {accuracy:.3f}", flush=True)
        save({"model": model.state_dict(), "optimizer": opt.state_dict(),
              "epoch": epoch + 1}, args.checkpoint)
    dist.barrier()                            # the checkpoint exists before anyone goes on

# data parallelism keeps the replicas identical: compare a checksum of each rank's
sums = dist.all_gather_object(sum(float(p.data.sum()) for p in model.parameters()))
dist.print0(f"replicas identical: {len(set(sums)) == 1}")
