# PyTorch Lightning with its tqdm progress bar (TQDMProgressBar, the default where rich is not
# installed; with rich, Lightning picks RichProgressBar: lightning_rich.py): the metrics a
# LightningModule logs with prog_bar=True end the bar, `Epoch 1: 100%|...| 32/32 [..., train_loss=0.4]`.
import argparse
import os
import time

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import TQDMProgressBar
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=3)
parser.add_argument("--lr", type=float, default=0.05)
parser.add_argument("--epoch-seconds", type=float, default=0.0)  # tests: a pause after each epoch
args = parser.parse_args()


class Classifier(pl.LightningModule):
    def __init__(self, lr):
        super().__init__()
        self.lr = lr
        self.net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
        self.loss_fn = nn.CrossEntropyLoss()

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = self.loss_fn(self.net(x), y)
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        out = self.net(x)
        self.log("val_loss", self.loss_fn(out, y), prog_bar=True)
        self.log("val_acc", (out.argmax(1) == y).float().mean(), prog_bar=True)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr)


class PauseAfterEpoch(pl.Callback):
    """Tests watch the job between epochs: say how many ended, then pause."""

    def on_train_epoch_end(self, trainer, pl_module):
        if args.epoch_seconds:
            with open(os.path.join(os.environ.get("SM_OUTPUT_DIR", "."), "epochs_done"), "w") as f:
                f.write(str(trainer.current_epoch + 1))
            time.sleep(args.epoch_seconds)


torch.manual_seed(0)
x = torch.randn(640, 8)
y = (x[:, 0] + x[:, 1] > 0).long()
train = DataLoader(TensorDataset(x[:512], y[:512]), batch_size=16, shuffle=True)
val = DataLoader(TensorDataset(x[512:], y[512:]), batch_size=64)

trainer = pl.Trainer(max_epochs=args.epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
                     callbacks=[TQDMProgressBar(), PauseAfterEpoch()])
trainer.fit(Classifier(args.lr), train, val)
