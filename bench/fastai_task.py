"""Peer anchor for the other task formats (issue 33): fastai's multi-label or regression fine-tuning recipe with the
same ImageNet EfficientNet-Lite0 weights as the naive scripts (../shared/baselines/lite_to_timm.py), as
fastai_finetune.py does for classes.

The recipe: a DataBlock of (ImageBlock, MultiCategoryBlock) with BCEWithLogitsLossFlat (threshold 0.5), or of
(ImageBlock, RegressionBlock) with MSELossFlat on the raw target; Resize(RES) and aug_transforms; a random 20 %
validation split; Learner.fine_tune(EPOCHS-1, freeze_epochs=1). A Learner over the Lite0 model rather than
vision_learner, whose timm weights would be downloaded: the machines here are offline.

Needs fastai (`pip install 'imgclf[bench]'`; run with fastai 2.8.12 and torch 2.14.1, BENCHMARKS.md session 34).

Usage:
    python bench/fastai_task.py DATASET ANSWERS RES EPOCHS --kind multilabel|regression --pred PATH [--threads N]

DATASET and ANSWERS as for naive_multilabel.py / naive_regression.py; --pred is written in the same layout (label
probabilities, or values). It prints `fastai: test done on N; train S s` last (task_formats.py scores the file).
"""

import argparse
import csv
import os
import sys
import time
from pathlib import Path

import pandas as pd
import torch
from fastai.vision.all import (
    BCEWithLogitsLossFlat,
    ColReader,
    DataBlock,
    ImageBlock,
    Learner,
    MSELossFlat,
    MultiCategoryBlock,
    Normalize,
    RandomSplitter,
    RegressionBlock,
    Resize,
    aug_transforms,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared" / "baselines"))
from lite_to_timm import create_tf_lite  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("dataset")
ap.add_argument("answers")
ap.add_argument("res", type=int)
ap.add_argument("epochs", type=int)
ap.add_argument("--kind", required=True, choices=["multilabel", "regression"])
ap.add_argument("--pred", required=True)
ap.add_argument("--threads", type=int, default=os.cpu_count())
a = ap.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(0)
train = pd.read_csv(f"{a.dataset}/train.csv", dtype={"tags": str}, keep_default_na=False)
id_col, target = train.columns[0], train.columns[1]
multilabel = a.kind == "multilabel"
if not multilabel:
    train[target] = train[target].astype("float32")
block = DataBlock(
    blocks=(ImageBlock, MultiCategoryBlock if multilabel else RegressionBlock(n_out=1)),
    get_x=ColReader(id_col, pref=f"{a.dataset}/train/", suff=".png"),
    get_y=ColReader(target, label_delim=" ") if multilabel else ColReader(target),
    splitter=RandomSplitter(0.2, seed=0),
    item_tfms=Resize(a.res),
    batch_tfms=[*aug_transforms(), Normalize.from_stats([0.5] * 3, [0.5] * 3)],
)
dls = block.dataloaders(train, bs=32, num_workers=min(2, os.cpu_count()))
model = create_tf_lite(0, num_classes=len(dls.vocab) if multilabel else 1)


def splitter(m):
    return [[p for n, p in m.named_parameters() if not n.startswith("classifier")], list(m.classifier.parameters())]


loss = BCEWithLogitsLossFlat(thresh=0.5) if multilabel else MSELossFlat()
learn = Learner(dls, model, loss_func=loss, splitter=splitter)
t0 = time.time()
with learn.no_bar():
    learn.fine_tune(max(1, a.epochs - 1), freeze_epochs=1)
train_s = time.time() - t0
ids = [r[0] for r in list(csv.reader(open(a.answers)))[1:]]
with learn.no_bar():
    preds, _ = learn.get_preds(dl=dls.test_dl([f"{a.dataset}/test/{i}.png" for i in ids]))
header = [id_col, *dls.vocab] if multilabel else [id_col, target]
with open(a.pred, "w", newline="") as fh:
    csv.writer(fh).writerows([header, *([i, *map(float, p)] for i, p in zip(ids, preds.reshape(len(ids), -1)))])
print(f"fastai: test done on {len(ids)}; train {train_s:.0f} s")
