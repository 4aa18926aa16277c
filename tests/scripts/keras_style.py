# A plain PyTorch loop that prints what Keras' `fit(verbose=2)` prints: an `Epoch 2/3` header, then
# `63/63 - 1s - loss: 0.4123 - accuracy: 0.8100 - val_loss: 0.4500 - val_accuracy: 0.7900`.
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
x = torch.randn(600, 8)
y = (x[:, 0] + x[:, 1] > 0).long()
x_train, y_train, x_val, y_val = x[:500], y[:500], x[500:], y[500:]
model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
opt = torch.optim.SGD(model.parameters(), lr=args.lr)
loss_fn = nn.CrossEntropyLoss()
batch = 8
steps = (len(x_train) + batch - 1) // batch

for epoch in range(args.epochs):
    print(f"Epoch {epoch + 1}/{args.epochs}")
    start = time.time()
    total, correct = 0.0, 0
    for i in range(0, len(x_train), batch):
        xb, yb = x_train[i:i + batch], y_train[i:i + batch]
        out = model(xb)
        loss = loss_fn(out, yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        total += loss.item() * len(xb)
        correct += (out.argmax(1) == yb).sum().item()
    with torch.no_grad():
        out = model(x_val)
        val_loss = loss_fn(out, y_val).item()
        val_acc = (out.argmax(1) == y_val).float().mean().item()
    seconds = round(time.time() - start)
    print(f"{steps}/{steps} - {seconds}s - loss: {total / len(x_train):.4f} - "
          f"accuracy: {correct / len(x_train):.4f} - val_loss: {val_loss:.4f} - val_accuracy: {val_acc:.4f}")
    if args.epoch_seconds:  # tests watch the job between epochs: say how many ended, then pause
        with open(os.path.join(os.environ.get("SM_OUTPUT_DIR", "."), "epochs_done"), "w") as f:
            f.write(str(epoch + 1))
        time.sleep(args.epoch_seconds)
