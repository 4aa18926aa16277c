# A plain PyTorch loop that prints one dict of metrics per epoch: `epoch 2/3: {'loss': ..., ...}`.
import argparse
import os
import time

import torch
from torch import nn

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=3)
parser.add_argument("--lr", type=float, default=0.05)
parser.add_argument("--epoch-seconds", type=float, default=0.0)  # tests: a pause after each epoch
args = parser.parse_args()

torch.manual_seed(0)
x = torch.randn(512, 8)
y = (x[:, 0] + x[:, 1] > 0).long()
model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
opt = torch.optim.SGD(model.parameters(), lr=args.lr)
loss_fn = nn.CrossEntropyLoss()

E = args.epochs
for e in range(E):
    total, correct, seen = 0.0, 0, 0
    for i in range(0, len(x), 16):
        xb, yb = x[i:i + 16], y[i:i + 16]
        out = model(xb)
        loss = loss_fn(out, yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        total += loss.item() * len(xb)
        correct += (out.argmax(1) == yb).sum().item()
        seen += len(xb)
    print(f"epoch {e+1}/{E}: {{'loss': {total / seen:.4f}, 'accuracy': {correct / seen:.4f}}}")
    if args.epoch_seconds:  # tests watch the job between epochs: say how many ended, then pause
        with open(os.path.join(os.environ.get("SM_OUTPUT_DIR", "."), "epochs_done"), "w") as f:
            f.write(str(e + 1))
        time.sleep(args.epoch_seconds)
