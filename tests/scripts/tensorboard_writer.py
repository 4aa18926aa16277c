# A plain PyTorch loop that writes its metrics with TensorBoard's SummaryWriter (train/loss per
# step, val/accuracy per epoch) under $SM_OUTPUT_DIR/tensorboard, and prints none of them.
import argparse
import os
import tempfile
import time

import torch
from torch import nn
from torch.utils.tensorboard import SummaryWriter

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=3)
parser.add_argument("--lr", type=float, default=0.05)
parser.add_argument("--epoch-seconds", type=float, default=0.0)  # tests: a pause after each epoch
args = parser.parse_args()

output_dir = os.environ.get("SM_OUTPUT_DIR") or tempfile.mkdtemp()
writer = SummaryWriter(log_dir=os.path.join(output_dir, "tensorboard"))

torch.manual_seed(0)
x = torch.randn(600, 8)
y = (x[:, 0] + x[:, 1] > 0).long()
x_train, y_train, x_val, y_val = x[:512], y[:512], x[512:], y[512:]
model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
opt = torch.optim.SGD(model.parameters(), lr=args.lr)
loss_fn = nn.CrossEntropyLoss()

print(f"training for {args.epochs} epochs", flush=True)
step = 0
for epoch in range(args.epochs):
    for i in range(0, len(x_train), 16):
        loss = loss_fn(model(x_train[i:i + 16]), y_train[i:i + 16])
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        writer.add_scalar("train/loss", loss.item(), step)
    with torch.no_grad():
        accuracy = (model(x_val).argmax(1) == y_val).float().mean().item()
    writer.add_scalar("val/accuracy", accuracy, step)
    writer.flush()
    if args.epoch_seconds:  # tests watch the job between epochs: say how many ended, then pause
        with open(os.path.join(output_dir, "epochs_done"), "w") as f:
            f.write(str(epoch + 1))
        time.sleep(args.epoch_seconds)
writer.close()
print("done", flush=True)
