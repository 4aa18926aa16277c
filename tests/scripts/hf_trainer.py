# Hugging Face Trainer on a tiny BERT built from its config (nothing downloaded), synthetic token
# data, evaluation each epoch: its log dicts `{'loss': ..., 'epoch': ...}` and `{'eval_loss': ...}`.
import argparse
import os
import tempfile
import time

import torch
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainerCallback, TrainingArguments

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=3)
parser.add_argument("--lr", type=float, default=5e-4)
parser.add_argument("--epoch-seconds", type=float, default=0.0)  # tests: a pause after each epoch
args = parser.parse_args()


class Tokens(torch.utils.data.Dataset):
    """Random token sequences; the label says whether token 7 occurs in the first half."""

    def __init__(self, n, seed):
        g = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(1, 100, (n, 16), generator=g)
        self.labels = (self.ids[:, :8] == 7).any(1).long()

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "attention_mask": torch.ones(16, dtype=torch.long),
                "labels": self.labels[i]}


class PauseAfterEpoch(TrainerCallback):
    """Tests watch the job between epochs: say how many ended, then pause."""

    def on_epoch_end(self, training_args, state, control, **kwargs):
        if args.epoch_seconds:
            with open(os.path.join(os.environ.get("SM_OUTPUT_DIR", "."), "epochs_done"), "w") as f:
                f.write(str(round(state.epoch)))
            time.sleep(args.epoch_seconds)


config = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                    intermediate_size=64, max_position_embeddings=32, num_labels=2)
torch.manual_seed(0)  # the same weights each run
model = BertForSequenceClassification(config)
output_dir = os.path.join(os.environ.get("SM_OUTPUT_DIR") or tempfile.mkdtemp(), "trainer")
training_args = TrainingArguments(
    output_dir=output_dir, num_train_epochs=args.epochs, learning_rate=args.lr,
    per_device_train_batch_size=16, per_device_eval_batch_size=32,
    eval_strategy="epoch", logging_strategy="steps", logging_steps=4, save_strategy="no",
    report_to=[], use_cpu=True, seed=0,
)
trainer = Trainer(model=model, args=training_args, train_dataset=Tokens(128, 0), eval_dataset=Tokens(64, 1),
                  callbacks=[PauseAfterEpoch()])
trainer.train()
