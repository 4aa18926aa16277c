"""The formats read with no set-up (sm_magic/metrics/log_formats.py): the lines each format prints, the
real logs of real frameworks in tests/data/logs (captured from local jobs, every redraw and escape
kept), and the prose that must not become metrics."""

from pathlib import Path

import pytest

from sm_magic.metrics.parser import MetricsParser, parse_metric_flag

LOGS = Path(__file__).parent / "data" / "logs"


def rows(lines, definitions=()):
    parser = MetricsParser(definitions)
    parser.feed(lines)
    return parser.rows


def log_lines(name: str, split: str = "\n") -> list[str]:
    """A captured log as the backends give it: lines split on "\\n" only (a bar's "\\r" redraws
    stay inside one line), or, with split="any", on "\\r" too, as a reader may still get them."""
    text = (LOGS / name).read_text(encoding="utf-8")
    return text.split("\n") if split == "\n" else text.splitlines()


# --- the lines each format prints ------------------------------------------------------------

FORMATS = [
    ("Lightning tqdm bar",
     ["Epoch 1: 100%|██████████| 8/8 [00:00<00:00, 40.1it/s, v_num=0, train_loss=0.512, val_loss=0.498, val_acc=0.750]"],
     [{"epoch": 1, "train_loss": 0.512, "val_loss": 0.498, "val_acc": 0.75}]),
    ("Lightning rich bar",
     ["Epoch 1/2  ━━━━━━━━ 8/8 0:00:00 • 0:00:00 40.10it/s v_num: 0 train_loss: 0.512 val_loss: 0.498"],
     [{"epoch": 1, "train_loss": 0.512, "val_loss": 0.498}]),
    ("tqdm postfix",
     ["epoch 2: 100%|██████████| 50/50 [00:01<00:00, 45.2it/s, loss=0.123, lr=0.001]"],
     [{"epoch": 2, "loss": 0.123, "lr": 0.001}]),
    ("tqdm postfix under a header",
     ["Epoch 2/3", "100%|██████████| 50/50 [00:01<00:00, 45.2it/s, loss=0.123]"],
     [{"epoch": 2, "loss": 0.123}]),
    ("tqdm postfix of a whole-run bar: the step it reached",
     [" 40%|████      | 200/500 [00:04<00:06, 45.2it/s, loss=0.3]"],
     [{"step": 200, "loss": 0.3}]),
    ("epoch N/M dict", ["epoch 2/3: {'loss': 0.41, 'accuracy': 0.81}"], [{"epoch": 2, "loss": 0.41, "accuracy": 0.81}]),
    ("Keras-style under its header",
     ["Epoch 2/3", "63/63 - 1s - loss: 0.41 - accuracy: 0.81 - val_loss: 0.45 - val_accuracy: 0.8"],
     [{"epoch": 2, "loss": 0.41, "accuracy": 0.81, "val_loss": 0.45, "val_accuracy": 0.8}]),
    ("Keras 3 bar with colours",
     ["Epoch 2/3", "\x1b[1m63/63\x1b[0m \x1b[32m━━━━━━━━━━━━━━━━━━━━\x1b[0m \x1b[1m1s\x1b[0m 16ms/step - accuracy: 0.8100 "
      "- loss: 0.4100"],
     [{"epoch": 2, "accuracy": 0.81, "loss": 0.41}]),
    ("pipes", ["Epoch 3 | step 120 | loss: 0.41 | acc: 0.88"], [{"epoch": 3, "loss": 0.41, "acc": 0.88}]),
    ("brackets", ["[epoch 3][step 120/500] loss=0.41 lr=1e-4"], [{"epoch": 3, "loss": 0.41, "lr": 1e-4}]),
    ("timm", ["Train: 3 [ 120/500 ( 24%)]  Loss: 0.41 (0.45)  Time: 0.102s,  313.72/s  (0.110s,  290.00/s)  "
              "LR: 1.000e-04  Data: 0.010 (0.012)"],
     [{"epoch": 3, "Loss": 0.41, "Time": 0.102, "LR": 1e-4, "Data": 0.01}]),
    ("mmcv", ["2024-01-01 12:00:00,000 - mmdet - INFO - Epoch [3][120/500]\tlr: 1.000e-04, eta: 0:01:02, "
              "time: 0.102, data_time: 0.010, memory: 1234, loss: 0.4123"],
     [{"epoch": 3, "lr": 1e-4, "time": 0.102, "data_time": 0.01, "memory": 1234, "loss": 0.4123}]),
    ("mmengine", ["01/01 12:00:00 - mmengine - INFO - Epoch(train)  [3][120/500]  lr: 1.0000e-04  eta: 0:01:02  "
                  "loss: 0.4123"],
     [{"epoch": 3, "lr": 1e-4, "loss": 0.4123}]),
    ("nanoGPT", ["iter 120: loss 0.4100, time 12.30ms, mfu 3.45%", "step 250: train loss 1.8000, val loss 1.9000"],
     [{"step": 120, "loss": 0.41, "time": 12.3, "mfu": 3.45}, {"step": 250, "train loss": 1.8, "val loss": 1.9}]),
    ("fairseq",
     ["2021-01-01 00:00:00 | INFO | train_inner | epoch 001:    100 / 1000 loss=4.123, ppl=7.45, lr=0.0005",
      "2021-01-01 00:00:00 | INFO | train | epoch 001 | loss 4.1 | ppl 7.4 | wall 31",
      "2021-01-01 00:00:00 | INFO | valid | epoch 001 | valid on 'valid' subset | loss 4.0 | ppl 7.0"],
     [{"epoch": 1, "loss": 4.1, "ppl": 7.4, "lr": 0.0005, "wall": 31, "valid_loss": 4.0, "valid_ppl": 7.0}]),
    ("PyTorch tutorial", ["Epoch [3/10], Step [100/600], Loss: 0.4123"], [{"epoch": 3, "Loss": 0.4123}]),
    ("PyTorch MNIST example", ["Train Epoch: 1 [640/60000 (1%)]\tLoss: 0.302026"], [{"epoch": 1, "Loss": 0.302026}]),
    ("names of words", ["Epoch 3: Train Loss: 0.4100, Val Loss: 0.5000, Val Acc: 0.9000"],
     [{"epoch": 3, "Train Loss": 0.41, "Val Loss": 0.5, "Val Acc": 0.9}]),
    ("Epoch: N", ["Epoch: 3, Loss: 0.41, Acc: 0.88"], [{"epoch": 3, "Loss": 0.41, "Acc": 0.88}]),
    ("key=value (as before)", ["2024-01-01 [rank0]: epoch=2, loss=0.2, acc=0.95"], [{"epoch": 2, "loss": 0.2, "acc": 0.95}]),
    ("Hugging Face dict between redraws",
     ["\r 33%|███▎      | 8/24 [00:00<00:00, 38.23it/s]\r\x1b[A{'eval_loss': '0.6403', 'epoch': '1'}"],
     [{"epoch": 1, "eval_loss": 0.6403}]),
]


@pytest.mark.parametrize("lines, expected", [f[1:] for f in FORMATS], ids=[f[0] for f in FORMATS])
def test_each_format_gives_its_rows(lines, expected):
    assert rows(lines) == expected


YOLO = [
    "      Epoch    GPU_mem   box_loss   cls_loss   dfl_loss  Instances       Size",
    "\r        1/3         0G      1.234      2.345      1.456         40        640:  50%|█████     | 4/8 [00:02<00:02,  1.52it/s]"
    "\r        1/3         0G      1.198      1.626      1.261        229        640: 100%|██████████| 8/8 [00:05<00:00,  1.52it/s]",
    "                 Class     Images  Instances      Box(P          R      mAP50  mAP50-95): 100%|██████████| 4/4 [00:01<00:00,"
    "  2.41it/s]",
    "                   all        128        929       0.67      0.531      0.613      0.453",
]


def test_ultralytics_yolo_tables_give_the_epochs_training_and_validation_metrics():
    assert rows(YOLO) == [{"epoch": 1, "GPU_mem": 0.0, "box_loss": 1.198, "cls_loss": 1.626, "dfl_loss": 1.261,
                           "P": 0.67, "R": 0.531, "mAP50": 0.613, "mAP50-95": 0.453}]


def test_a_line_that_looks_like_yolos_header_costs_nothing_later():
    parser = MetricsParser()
    parser.feed(["Class weights computed: 100%|██████████| 3/3 [00:00<00:00, 9.9it/s]"])
    assert parser._reader.context  # YOLO's validation row may come next: every line is read
    parser.feed(["loading"] * 6)
    assert not parser._reader.context  # it did not: ordinary lines are again skipped by the substring tests
    parser.feed(["all 1 2 3"])
    assert parser.rows == []


PROSE = [
    "step 5 loss=0.5 of a flood of log lines",
    "Epoch 1 done, took 12s",
    "Epoch 3 of 10 took 12.5 seconds",
    "Saving checkpoint at step 500 to /tmp/ckpt-500",
    "Loaded 5000 examples in step 3 of preprocessing",
    "Epoch 3: Training finished, best accuracy: 0.88 at step 120 of the run",
    "running with --epochs=3 --lr=0.1 --max_epoch=3",
    "Training for 3 epochs, 120 steps per epoch",
    "INFO step through batch 3 lr=5e-5",
    "Sanity Checking: |          | 0/? [00:00<?, ?it/s]",
    "Validation DataLoader 0:  50%|█████     | 1/2 [00:00<00:00, 141.71it/s]",
]


@pytest.mark.parametrize("line", PROSE)
def test_numbers_inside_prose_are_not_metrics(line):
    assert rows([line]) == []


def test_a_header_counts_for_a_few_lines_only():
    far = ["Epoch 2/3"] + ["loading the next shard of data"] * 25 + ["loss: 0.41 - accuracy: 0.81"]
    assert rows(far) == []
    near = ["Epoch 2/3"] + ["loading the next shard of data"] * 5 + ["loss: 0.41 - accuracy: 0.81"]
    assert rows(near) == [{"epoch": 2, "loss": 0.41, "accuracy": 0.81}]


def test_a_headers_metric_lines_keep_it_alive():
    # Keras' batch redraws, each a line of its own (a log split on "\r" too): the last is the epoch's.
    lines = ["Epoch 1/2"] + [f"{i}/63 [====>....] - ETA: 0s - loss: {1 / i:.4f}" for i in range(1, 64)]
    assert rows(lines) == [{"epoch": 1, "loss": round(1 / 63, 4)}]


def test_lines_without_a_header_or_marker_are_not_rows():
    assert rows(["63/63 - 1s - loss: 0.41 - accuracy: 0.81", "loss: 0.41"]) == []


def test_a_bar_redrawn_many_times_gives_each_epochs_last_values():
    redraws = "".join(f"\rEpoch {e}: {10 * i}%|{'█' * i}{' ' * (10 - i)}| {i}/10 [00:0{i}<00:00, 9.9it/s, loss={e + i / 100}]"
                      for e in range(3) for i in range(1, 11))
    assert rows([redraws]) == [{"epoch": e, "loss": e + 0.1} for e in range(3)]


def test_a_metric_a_definition_names_is_left_to_it():
    definitions = [parse_metric_flag("loss=smoothed loss ([0-9.]+)")]
    assert rows(["Epoch 1 | loss: 0.9 | acc: 0.5", "smoothed loss 0.7"], definitions) == [
        {"epoch": 1, "acc": 0.5, "loss": 0.7}]


# --- the real logs of real frameworks (tests/data/logs, see its README) ----------------------

REAL = {
    "hf_trainer.log": (["epoch", "loss", "grad_norm", "learning_rate", "eval_loss"], [0.5, 1, 1.5, 2, 2.5, 3]),
    "lightning_bar.log": (["epoch", "train_loss", "val_loss", "val_acc"], [0, 1, 2]),
    "lightning_rich.log": (["epoch", "train_loss", "val_loss", "val_acc"], [2]),
    "lightning_rich.tty.log": (["epoch", "train_loss", "val_loss", "val_acc"], [0, 1, 2]),
    "tqdm_postfix.log": (["epoch", "loss", "lr"], [0, 1, 2]),
    "epoch_dict.log": (["epoch", "loss", "accuracy"], [1, 2, 3]),
    "keras_style.log": (["epoch", "loss", "accuracy", "val_loss", "val_accuracy"], [1, 2, 3]),
}


@pytest.mark.parametrize("split", ["\n", "any"])
@pytest.mark.parametrize("name", sorted(REAL))
def test_real_logs_give_their_metric_rows(name, split):
    columns, epochs = REAL[name]
    found = rows(log_lines(name, split))
    assert [row["epoch"] for row in found] == epochs
    for column in columns:
        assert any(column in row for row in found), column
    assert all("v_num" not in row for row in found)


def test_the_lightning_bar_log_has_each_epochs_validation_metrics():
    found = rows(log_lines("lightning_bar.log"))
    assert [(r["train_loss"], r["val_loss"], r["val_acc"]) for r in found] == [
        (0.659, 0.642, 0.656), (0.601, 0.58, 0.719), (0.548, 0.498, 0.781)]


def test_the_rich_log_reads_the_metrics_wrapped_below_the_bar():
    assert rows(log_lines("lightning_rich.log")) == [{"epoch": 2, "train_loss": 0.548, "val_loss": 0.498, "val_acc": 0.781}]


def test_the_rich_bars_wrapped_metrics_keep_a_hosts_prefix():
    lines = [f"algo-1 | {line}" for line in log_lines("lightning_rich.log") if line]
    assert rows(lines) == [{"epoch": 2, "train_loss": 0.548, "val_loss": 0.498, "val_acc": 0.781}]


def test_the_keras_and_epoch_dict_logs_exactly():
    assert rows(log_lines("keras_style.log"))[0] == {
        "epoch": 1, "loss": 0.591, "accuracy": 0.732, "val_loss": 0.4794, "val_accuracy": 0.89}
    assert rows(log_lines("epoch_dict.log"))[-1] == {"epoch": 3, "loss": 0.4019, "accuracy": 0.8887}


def test_the_hugging_face_log_keeps_training_and_evaluation_rows():
    found = rows(log_lines("hf_trainer.log"))
    by_epoch = {r["epoch"]: r for r in found}
    assert by_epoch[0.5]["loss"] == 0.6789 and by_epoch[1]["eval_loss"] == 0.6403
    assert by_epoch[3]["train_loss"] == 0.6282


def test_the_tensorboard_scripts_log_has_no_rows():
    assert rows(log_lines("tensorboard_writer.log")) == []
