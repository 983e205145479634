#!/usr/bin/env bash
# The GPU check of issue 34: one script, one GPU, under 8 minutes (5 of them the --budget run), one table.
#
#   bash bench/gpu_check.sh                  # on a GPU machine (device cuda)
#   bash bench/gpu_check.sh --device cpu     # a dry run on the CPU: tiny sizes and steps, a few minutes, the same table
#
# Checks, cheapest first, each writing JSON into $GPU_CHECK_OUT (default bench/.data/gpu_check):
#   1. bench/train_speed.py: end to end (imgclf's loop, resize cache, loader of 4 workers as on a Kaggle
#      notebook) against the raw training step, bf16 + channels_last, at 224 and 384 px
#   2. bench/infer.py: predict end to end against the raw model (PyTorch)
#   3. bench/train_speed.py --procs 1: the same training through imgclf.launch (a spawned process in an NCCL group)
#   4. the demo job (imgclf demo) with its scores
#   5. bench/train_speed.py --compile: train.compile on, at 224 px
#   6. imgclf train --budget on the demo data: the recipe's choices and its estimate
# The table is printed at the end, also when a check fails or the time runs out (with the rows done so far).
# Environment: PYTHON (default python), GPU_CHECK_OUT, GPU_CHECK_BUDGET (default 5m on CUDA, 30s on the CPU).
set -uo pipefail

DEVICE=cuda
if [[ "${1:-}" == "--device" ]]; then DEVICE="${2:?--device cpu or cuda}"; fi
PY="${PYTHON:-python}"
cd "$(dirname "$0")/.."
OUT="${GPU_CHECK_OUT:-bench/.data/gpu_check}"
rm -rf "$OUT" && mkdir -p "$OUT"

if [[ "$DEVICE" == cuda ]]; then
  SIZES=(224 384); BATCH=128; NTRAIN=4096; EPOCHS=3; RAW=20; INFER=(--n 2048 --batch 128 --iters 20 --repeats 2)
  DEMO_OVERRIDES='[]'; DEMO_QUICK=False; BUDGET="${GPU_CHECK_BUDGET:-5m}"
else
  SIZES=(64); BATCH=8; NTRAIN=48; EPOCHS=2; RAW=2; INFER=(--n 32 --batch 8 --size 64 --iters 2 --repeats 1)
  DEMO_OVERRIDES='["train.epochs=1", "data.subset=0.25", "data.image_size=32"]'; DEMO_QUICK=True
  BUDGET="${GPU_CHECK_BUDGET:-30s}"
fi
SPEED=(bench/train_speed.py --device "$DEVICE" --amp bf16 --channels-last --workers 4 --batch "$BATCH"
       --n-train "$NTRAIN" --epochs "$EPOCHS" --raw-steps "$RAW")

step() {  # step NAME COMMAND...: run it, keep its log, record its exit code and seconds
  local name="$1"; shift
  local t0=$SECONDS
  echo "== $name: $*" >&2
  "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  echo "{\"step\": \"$name\", \"rc\": $rc, \"seconds\": $((SECONDS - t0))}" >>"$OUT/steps.jsonl"
  [[ $rc == 0 ]] || { echo "   $name failed (exit $rc): tail of $OUT/$name.log" >&2; tail -5 "$OUT/$name.log" >&2; }
}

table() {
  "$PY" - "$OUT" "$DEVICE" <<'EOF'
import json, sys
from pathlib import Path

out, device = Path(sys.argv[1]), sys.argv[2]
def load(name):
    p = out / name
    return json.loads(p.read_text()) if p.is_file() else None
steps = {s["step"]: s for s in map(json.loads, (out / "steps.jsonl").read_text().splitlines())} if (out / "steps.jsonl").is_file() else {}
rows = []
def row(check, setting, figure, ratio="", verdict=""):
    rows.append((check, setting, figure, ratio, verdict))
def missing(check, name):
    s = steps.get(name)
    row(check, "", "not run" if s is None else f"failed (exit {s['rc']}, see {name}.log)")

for name in ("train", "train_compile"):
    r = load(f"{name}.json")
    if r is None:
        missing("train_speed", name)
        continue
    what = f"{r['setup']['amp']} + channels_last" + (" + compile" if r["setup"]["compile"] else "")
    for size, e in r["sizes"].items():
        row("train_speed", f"{size} px, {what}, batch {r['setup']['batch']}, 4 workers",
            f"raw {e['raw_images_per_second']:.0f} / e2e {e['e2e_images_per_second']:.0f} img/s",
            f"e2e/raw {e['e2e / raw']:.2f}", "ok" if e["goal e2e >= 0.9 raw"] else "BELOW 0.90")
r = load("infer.json")
if r is None:
    missing("predict", "infer")
else:
    ips = r["images_per_second"]
    row("predict", f"{r['setup']['size']} px, batch {r['setup']['batch']}, torch",
        f"raw {ips['raw_torch']:.0f} / e2e {ips['e2e_torch']:.0f} img/s (cold cache {ips['e2e_torch_cold_cache']:.0f})",
        f"e2e/raw {r['ratios']['e2e_torch / raw_torch']:.2f}", "ok" if r["goals"]["pipeline loses <= 10% (torch)"] else "BELOW 0.90")
r = load("devices1.json")
if r is None:
    missing("--devices 1", "devices1")
else:
    for size, e in r["sizes"].items():
        launched = e["torchrun_images_per_second"]["1"]
        row("--devices 1", f"{size} px, one spawned process, {'NCCL' if device == 'cuda' else 'gloo'} group",
            f"{launched:.0f} img/s (in-process {e['e2e_images_per_second']:.0f})",
            f"launched/in-process {launched / e['e2e_images_per_second']:.2f}", "ran")
r = load("demo.json")
if r is None:
    missing("imgclf demo", "demo")
else:
    row("imgclf demo", "quick, cut down" if device != "cuda" else "full (demo.yaml)",
        f"val acc {r['val_accuracy']:.4f}, test acc {r['test_accuracy']:.4f} on {r['test_images']}",
        f"{r['seconds']:.0f}s (training {r['train_seconds']:.0f}s)", "ran")
r = load("budget/recipe.json")
if r is None:
    missing("train --budget", "budget")
else:
    est = r.get("estimate") or {}
    value = f"estimate {est['value']:.4f}" + (f" ± {est['se']:.4f}" if est.get("se") is not None else "") if est.get("value") is not None else "no estimate"
    chosen = r.get("chosen") or {}
    choice = ", ".join(f"{k} {chosen[k]}" for k in ("image_size", "epochs", "members", "tta") if chosen.get(k) is not None)
    flips = (r.get("orientation") or {}).get("flips")
    row("train --budget", f"{r['budget_seconds']:.0f}s, demo data: {choice}" + (f", flips {flips}" if flips else ""), value,
        f"used {r.get('elapsed_seconds', 0):.0f}s", "ok" if r.get("within_budget") else "OVER")

head = ("check", "setting", "figure", "ratio / time", "verdict")
widths = [max(len(str(x[i])) for x in [head, *rows]) for i in range(5)]
line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"
title = "GPU check (issue 34)" if device == "cuda" else "GPU check (issue 34): CPU DRY RUN, tiny sizes, not a measurement"
total = sum(s["seconds"] for s in steps.values())
print(f"\n{title} — {len(steps)} steps in {total}s")
print(line(head))
print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
for r in rows:
    print(line(r))
EOF
}
trap table EXIT

"$PY" -c "import imgclf, torch; print('imgclf', imgclf.__version__, '| torch', torch.__version__, '|',
  torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU')" | tee "$OUT/machine.txt"
[[ "$DEVICE" == cuda ]] && ! "$PY" -c "import torch, sys; sys.exit(not torch.cuda.is_available())" \
  && { echo "no CUDA device: run with --device cpu for a dry run" >&2; exit 2; }

step train "$PY" "${SPEED[@]}" --sizes "${SIZES[@]}" --json "$OUT/train.json"
step infer "$PY" bench/infer.py --device "$DEVICE" --engines torch --workers 4 "${INFER[@]}" --json "$OUT/infer.json"
step devices1 "$PY" "${SPEED[@]}" --sizes "${SIZES[0]}" --procs 1 --json "$OUT/devices1.json"
step demo "$PY" -c "
import json; from pathlib import Path; from imgclf.demo import run_demo
r = run_demo(quick=$DEMO_QUICK, workdir=Path('$OUT/demo-data'), out=Path('$OUT/demo-run'),
             overrides=$DEMO_OVERRIDES + ['train.device=$DEVICE', 'tracking.enabled=false'])
Path('$OUT/demo.json').write_text(json.dumps(r, indent=2))"
step train_compile "$PY" "${SPEED[@]}" --sizes "${SIZES[0]}" --compile --json "$OUT/train_compile.json"
step budget "$PY" -m imgclf train "$OUT/demo-data/dataset" \
  --budget "$BUDGET" --out "$OUT/budget" --set "train.device=$DEVICE" --set tracking.enabled=false
