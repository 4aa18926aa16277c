"""Training scripts the tests launch (shared by several test modules)."""

import textwrap


def script(body: str) -> str:
    return textwrap.dedent(body).lstrip("\n")


# A training script with no torch import: the local backend's path is what is under test.
EPOCHS_SCRIPT = script("""
    import argparse, json, os, sys
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--lr", type=float, default=0.1)
    args = parser.parse_args()
    for epoch in range(args.epochs):
        acc = 0.5 + 0.1 * epoch
        print(f"epoch {epoch}: {{'accuracy': {acc}, 'f1': {acc - 0.05}}}")
    model_dir = os.environ["SM_MODEL_DIR"]
    with open(os.path.join(model_dir, "model.json"), "w") as f:
        json.dump({"lr": args.lr, "argv": sys.argv[1:]}, f)
    with open(os.path.join(model_dir, "env.json"), "w") as f:
        json.dump({k: v for k, v in os.environ.items() if k.startswith("SM_")}, f)
""")
