# A plain PyTorch loop with one tqdm bar per epoch, its loss and learning rate in the postfix:
# `epoch 1: 100%|██████████| 32/32 [00:00<00:00, 350.2it/s, loss=0.412, lr=0.05]`.
import argparse
import os
import time

import torch
from torch import nn
from tqdm import tqdm

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
sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
loss_fn = nn.CrossEntropyLoss()

for e in range(args.epochs):
    bar = tqdm(range(0, len(x), 16), desc=f"epoch {e}")
    for i in bar:
        loss = loss_fn(model(x[i:i + 16]), y[i:i + 16])
        opt.zero_grad()
        loss.backward()
        opt.step()
        bar.set_postfix(loss=loss.item(), lr=sched.get_last_lr()[0])
    sched.step()
    if args.epoch_seconds:  # tests watch the job between epochs: say how many ended, then pause
        with open(os.path.join(os.environ.get("SM_OUTPUT_DIR", "."), "epochs_done"), "w") as f:
            f.write(str(e + 1))
        time.sleep(args.epoch_seconds)
