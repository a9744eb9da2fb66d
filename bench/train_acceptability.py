"""Train the acceptability regressor (critique.acceptability) on its rows of both acceptability train CSVs.

    PYTHONPATH=. OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python bench/train_acceptability.py \
        --out runs/acc_regressor --epochs 1 --lr 5e-4 --threads 1

Rows: every instance except the checks head's 120 per file and the 60-instance held-out sample
(critique.acceptability.acceptability_split); --dev instances per file kept for the epoch / LR choice
(dev Spearman per file is printed and written into the output's entail_config.json). `--max-steps N`
stops early (speed measurement).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from critique.acceptability import train_regressor  # noqa: E402
from microtheory.datasets import default_data_dir  # noqa: E402
from retrieval.entail_train import TrainConfig  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--max-steps", type=int, default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--dev", type=int, default=80, help="regressor dev instances per file")
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--checkpoint-every", type=int, default=460, help="steps (460 = one epoch on the default rows)")
    ap.add_argument("--data-dir", default=None)
    a = ap.parse_args()
    cfg = TrainConfig(epochs=a.epochs, lr=a.lr, batch_size=a.batch_size, max_length=a.max_length,
                      max_steps=a.max_steps, num_threads=a.threads, seed=a.seed,
                      checkpoint_every=a.checkpoint_every)
    data = Path(a.data_dir) if a.data_dir else default_data_dir()
    out = train_regressor(a.out, cfg, data, regressor_dev=a.dev)
    print(json.dumps(out, indent=2, default=float))


if __name__ == "__main__":
    main()
