"""Typed configuration: defaults here → YAML file → ``--set key=value`` overrides.

Merged once at the CLI, validated (unknown keys are rejected with a suggestion), then
frozen and saved as ``config.yaml`` in the run directory. Code below the CLI takes the
resolved objects (or plain arguments), never raw dictionaries.

Example::

    cfg = load_config("my.yaml", overrides=["train.epochs=5", "model.head=mlp_bn"])
    cfg.train.epochs  # 5
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from imgclf.errors import ConfigError
from imgclf.safe_yaml import YAMLLimitError, load_yaml, read_yaml_file

EMBEDDED_WEIGHTS = {
    "embedded:lite0": "tf_efficientnet_lite0",
    "embedded:lite1": "tf_efficientnet_lite1",
    "embedded:lite2": "tf_efficientnet_lite2",
}


# The names a config key accepts are declared once, here; the tuples other modules check against
# are derived from them, so a new strategy or head is added in one place.
AugmentPreset = Literal["auto", "none", "light", "medium", "strong"]
Flips = Literal["none", "h", "hv", "d4"]
Head = Literal["linear", "mlp", "mlp_bn"]
Strategy = Literal["full", "linear_probe", "gradual", "bn_only"]
BnPolicy = Literal["train", "frozen_stats", "frozen"]
Monitor = Literal["val_accuracy", "val_loss"]
MetricName = Literal[  # registry: imgclf.eval.metrics (every task's names: multiclass, multilabel, regression)
    "accuracy",
    "log_loss",
    "macro_f1",
    "qwk",
    "roc_auc",
    "top_k",
    "f1_micro",
    "f1_macro",
    "f1_samples",
    "f2_samples",
    "exact_match",
    "mean_auc",
    "map",
    "bce",
    "rmse",
    "mae",
    "r2",
]
Device = Literal["auto", "cpu", "cuda"]
TTAMode = Literal["none", "fixed", "adaptive"]
TTAAggregate = Literal["mean_probs", "mean_logits"]
TTAUncertainty = Literal["margin", "entropy"]

AUGMENT_PRESETS: tuple[str, ...] = get_args(AugmentPreset)
FLIP_GROUPS: tuple[str, ...] = get_args(Flips)
HEADS: tuple[str, ...] = get_args(Head)
STRATEGIES: tuple[str, ...] = get_args(Strategy)
BN_POLICIES: tuple[str, ...] = get_args(BnPolicy)
MONITORS: tuple[str, ...] = get_args(Monitor)
METRICS: tuple[str, ...] = get_args(MetricName)
DEVICES: tuple[str, ...] = get_args(Device)
TTA_MODES: tuple[str, ...] = get_args(TTAMode)
TTA_AGGREGATES: tuple[str, ...] = get_args(TTAAggregate)
TTA_UNCERTAINTIES: tuple[str, ...] = get_args(TTAUncertainty)


class _Section(BaseModel):
    # allow_inf_nan=False: a learning rate of inf passed every range check (inf > 0) and left NaN weights.
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True, allow_inf_nan=False)


class DataConfig(_Section):
    image_size: int | None = Field(None, ge=16, le=2048, description="Training/eval size; None = the model's own.")
    start_size: int | None = Field(
        None,
        ge=0,
        le=2048,
        description="Progressive resizing: the first epoch trains at this size, growing linearly to "
        "image_size by the last third of the epochs (evaluation always at image_size); "
        "None or 0 = off (--budget turns it on at 0.6 x its size unless set).",
    )
    val_fraction: float = Field(
        0.2,
        ge=0.0,
        lt=1.0,
        description="Stratified validation fraction; 0 = train on every image (no validation score, no early stopping: what refit does).",
    )
    split_seed: int = Field(
        0, ge=0, lt=2**32, description="Seed of the train/validation split (kept fixed across training seeds)."
    )
    split_file: str | None = Field(None, description="Reuse a saved split.csv instead of drawing a new one.")
    subset: float = Field(1.0, gt=0.0, le=1.0, description="Stratified fraction of the training split to use.")
    augment: AugmentPreset = Field(
        "auto",
        description="Training augmentation preset: auto | none | light | medium | strong. auto = medium for one class "
        "per image; for label sets and values, the whole image mirrored left-right (none, flips h, eval crop 1.0): "
        "a random crop can cut a labelled item away, and so change the target (imgclf.training.task_setup).",
    )
    crop_scale: tuple[float, float] | None = Field(
        None,
        description="RandomResizedCrop area range [lo, hi] as fractions of the image (1 = whole); None = the preset's.",
    )
    crop_ratio: tuple[float, float] | None = Field(
        None, description="RandomResizedCrop aspect-ratio range [lo, hi]; None = [0.75, 1.333]."
    )
    flips: Flips | None = Field(
        None,
        description="Training flips: none | h (left-right) | hv (and up-down) | d4 (flips and 90° turns); "
        "None = the preset's (h; none for augment=none).",
    )
    color_jitter: float | None = Field(
        None, ge=0.0, le=1.0, description="Brightness/contrast/saturation jitter (0 = off); None = the preset's."
    )
    eval_crop_pct: float | None = Field(
        None,
        gt=0.0,
        le=1.0,
        description="Eval centre crop as a fraction of the resized image (1.0 = no border cut); "
        "None = the model's (0.875 for most).",
    )
    batch_size: int | Literal["auto"] = Field(
        32,
        description="The global batch; auto = on CUDA the largest that fits 60 % of the GPU's memory, found by a "
        "short probe (imgclf.training.auto_batch; train.lr is not scaled), on the CPU 32.",
    )
    num_workers: int | None = Field(None, ge=0, le=64, description="None = chosen from the CPU count.")
    cache: bool = Field(True, description="Decode each image once into a resize cache.")
    cache_dir: str | None = Field(None, description="Where the resize cache lives; None = <dataset>/.imgclf-cache.")
    blocklist: str | None = Field(
        None,
        description="A reviewed blocklist (CSV: path or sha256, reason); None = <dataset>/blocklist.csv if present.",
    )
    task: Literal["auto", "multiclass", "multilabel", "regression"] = Field(
        "auto",
        description="What a label is: auto (found from the labels CSV; imgclf.data.targets says how) | multiclass "
        "(one class per image) | multilabel (any set: space-separated tags, or one 0/1 column per label) | "
        "regression (a number; integer grades are multiclass unless this says regression).",
    )
    target_column: str | None = Field(
        None, description="The labels CSV's target column when more than one could be (regression); None = found."
    )
    sampler: Literal["none", "balanced"] = Field(
        "none",
        description="Training order: none (a shuffle) | balanced (torch WeightedRandomSampler with inverse class "
        "frequencies, with replacement, same epoch length, seeded from train.seed; works under DDP).",
    )

    @field_validator("batch_size", mode="before")
    @classmethod
    def _batch_size(cls, value: Any) -> Any:
        # one line for both halves of the union, instead of one per member; 8.0 is 8, as pydantic's int has it
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 4096):
            return value
        raise ValueError(f"must be a number from 1 to 4096, or auto (got {_short_repr(value)})")

    @model_validator(mode="after")
    def _augment_keys(self) -> "DataConfig":
        for key, (lo_min, hi_max) in (("crop_scale", (0.0, 1.0)), ("crop_ratio", (0.0, None))):
            pair = getattr(self, key)
            if pair is not None and not (lo_min < pair[0] <= pair[1] and (hi_max is None or pair[1] <= hi_max)):
                bound = f" <= {hi_max:g}" if hi_max is not None else ""
                raise ValueError(f"{key} must be [lo, hi] with 0 < lo <= hi{bound}, got {list(pair)}")
        if self.start_size and (self.start_size < 16 or (self.image_size and self.start_size > self.image_size)):
            raise ValueError(
                f"start_size must be 0 (off) or from 16 up to image_size ({self.image_size}), got {self.start_size}"
            )
        if self.augment == "strong" and self.color_jitter is not None:
            raise ValueError(
                "color_jitter has no effect with data.augment=strong (RandAugment changes colour "
                "itself); drop it or use augment=medium"
            )
        return self


def _snapshot_architecture(weights: str) -> str | None:
    """The architecture a timm/HF snapshot folder's config.json names (None: not such a folder)."""
    if weights in ("hub", "none", "checkpoint"):
        return None
    config = Path(weights) / "config.json"
    try:
        arch = json.loads(config.read_text()).get("architecture") if config.is_file() else None
    except (OSError, ValueError, AttributeError):
        return None
    return arch if isinstance(arch, str) else None


class ModelConfig(_Section):
    weights: str = Field(
        "embedded:lite0",
        description="embedded:lite0|lite1|lite2, a .safetensors/.pth file, a timm/HF snapshot folder (config.json + model.safetensors), "
        "'hub' (timm's weights: the local HF cache, else a download) or 'none' (random init).",
    )
    backbone: str | None = Field(None, description="Any timm model name; None = the one the weights belong to.")
    head: Head = "linear"
    head_hidden: int = Field(512, ge=1, le=65536)
    dropout: float = Field(0.2, ge=0.0, lt=1.0)
    drop_path: float = Field(0.0, ge=0.0, lt=1.0)

    @model_validator(mode="after")
    def _resolve_backbone(self) -> "ModelConfig":
        if self.weights in EMBEDDED_WEIGHTS:
            arch = EMBEDDED_WEIGHTS[self.weights]
            if self.backbone is None:
                object.__setattr__(self, "backbone", arch)
            elif self.backbone != arch:
                raise ValueError(
                    f"weights {self.weights} are for backbone {arch}, not {self.backbone}; "
                    "drop model.backbone or choose other weights"
                )
        elif self.weights.startswith("embedded:"):
            raise ValueError(f"unknown embedded weights {self.weights!r}; choose one of {', '.join(EMBEDDED_WEIGHTS)}")
        elif self.backbone is None and _snapshot_architecture(self.weights):
            object.__setattr__(self, "backbone", _snapshot_architecture(self.weights))
        elif self.backbone is None:
            raise ValueError(f"model.backbone must be set when model.weights is {self.weights!r}")
        return self


class FinetuneConfig(_Section):
    strategy: Strategy = "full"
    bn: BnPolicy = "train"
    head_epochs: int = Field(1, ge=0, description="gradual: epochs with only the head trainable.")
    stages: int = Field(2, ge=1, description="gradual: the backbone is unfrozen from the top in this many stages.")
    stage_epochs: int = Field(1, ge=1, description="gradual: epochs between two unfreezing steps.")
    layer_decay: float | None = Field(None, gt=0.0, le=1.0, description="Layer-wise LR decay; None = off.")
    head_lr: float | None = Field(None, gt=0.0, description="Separate head learning rate; None = train.lr.")
    freeze_bottom: float = Field(
        0.0,
        ge=0.0,
        lt=1.0,
        description="Share of the backbone's layer groups (timm's, stem first) that never train, "
        "like fastai's freeze_to: their backward pass is skipped, so each step is cheaper "
        "(the early, high-resolution layers cost the most); 0 = none. Any strategy.",
    )


class TrainConfig(_Section):
    epochs: int = Field(20, ge=1, le=10000)
    time_limit: float | None = Field(
        None,
        gt=0.0,
        description="Seconds the training may take (after set-up): after each epoch the epochs are re-planned "
        "to what fits the time left at the pace so far (train.epochs is the most) and the LR "
        "schedule ends there (the last epoch partial when a share of one fits); None = exactly "
        "train.epochs. --budget sets it for its final model.",
    )
    time_cost: tuple[float, float] | None = Field(
        None,
        description="[a, b]: seconds to train one image at size s as a + b*s^2, for train.time_limit to time the "
        "epochs of progressive resizing (data.start_size) at sizes not trained yet from the nearest "
        "one trained; None = by pixels (s^2, which overestimates larger sizes). --budget sets it from "
        "its warm-up.",
    )
    budget_members: int = Field(
        3,
        ge=1,
        le=10,
        description="--budget (train): the most models it trains, each on every image, as an equal-weight "
        "ensemble that predict blends; only as many as each still get the size one model would "
        "and 6 epochs. 1 = always one model (a single file to export).",
    )
    budget_probes: bool = Field(
        True,
        description="--budget: the resolution probe (caps the size where frozen features show a smaller one loses "
        "nothing beyond one standard error) and the orientation probe (the flip group, when data.flips "
        "is left to the recipe). Off: the largest size the budget affords, and flips h.",
    )
    keep: Literal["best", "last"] = Field(
        "best",
        description="Which epoch's weights the run keeps: best = the best train.monitor on validation; last = the "
        "last epoch's (no early stopping), so the validation score is an unbiased estimate of the "
        "model kept. --budget uses last.",
    )
    lr: float = Field(1e-3, gt=0.0, le=10.0)
    weight_decay: float = Field(0.05, ge=0.0, le=10.0)
    warmup_epochs: float = Field(1.0, ge=0.0)
    label_smoothing: float | None = Field(
        None,
        ge=0.0,
        lt=1.0,
        description="Label smoothing; None = 0.1 for one class per image, 0 for label sets (smoothing moves each "
        "label's 0/1 target towards 0.5, as timm's multi-label mixup does: 0.1 cost 0.007 ± 0.002 F2 on the "
        "multilabel mosaics). Regression ignores it.",
    )
    grad_clip: float | None = Field(1.0, gt=0.0)
    patience: int | None = Field(10, ge=1, description="Early-stopping patience in epochs; None = full schedule.")
    min_delta: float = Field(0.0, ge=0.0)
    monitor: Monitor | None = Field(
        None,
        description="What early stopping and the kept checkpoint follow: val_accuracy | val_loss; None = val_<train.metric>.",
    )
    seed: int = Field(
        0,
        ge=0,
        lt=2**32,
        description="Seeds model init, data order and augmentation (numpy and torch take 0..2**32-1).",
    )
    device: Device = "auto"
    amp: bool = Field(True, description="Mixed precision (bf16, or fp16 + GradScaler) when CUDA is present.")
    channels_last: bool = Field(
        True,
        description="Train, validate and predict in the NHWC memory format, on CUDA and on the CPU (oneDNN): "
        "1.4-1.7x per training step and per prediction on a 2-core Xeon (BENCHMARKS.md); false = NCHW.",
    )
    compile: bool = False
    sync_bn: bool = False
    deterministic: bool = False
    max_steps_per_epoch: int | None = Field(None, ge=1, description="Cap on optimiser steps per epoch (smoke runs).")
    checkpoint_every: int = Field(1, ge=1, description="Save checkpoints/last every N epochs.")
    ema: bool = Field(
        False,
        description="Keep an exponential moving average of the weights (timm ModelEmaV3); validation and checkpoints use it.",
    )
    ema_decay: float = Field(
        0.999, gt=0.0, lt=1.0, description="EMA decay, reached after a warm-up (short runs average over fewer steps)."
    )
    mixup: float = Field(0.0, ge=0.0, le=10.0, description="Mixup alpha (timm Mixup); 0 = off. Training batches only.")
    cutmix: float = Field(
        0.0, ge=0.0, le=10.0, description="CutMix alpha (timm Mixup); 0 = off. Training batches only."
    )
    accumulate: int = Field(
        1,
        ge=1,
        le=1024,
        description="Gradient accumulation: one optimiser step per N batches (effective batch = N x data.batch_size).",
    )
    metric: MetricName = Field(
        "accuracy",
        description="The competition's metric: accuracy | log_loss | macro_f1 | qwk (quadratic weighted kappa) | "
        "roc_auc (one-vs-rest, macro) | top_k (k = train.metric_k); multilabel targets: f1_micro | f1_macro | "
        "f1_samples | f2_samples | exact_match (subset accuracy) | mean_auc | map | bce; regression: rmse | mae | r2 | qwk "
        "(values cut into integer grades). It picks the kept checkpoint "
        "(unless train.monitor is set), early stopping, sweep objectives, CV/ensemble scores and evaluate.",
    )
    metric_k: int = Field(
        5, ge=1, le=1000, description="top_k: how many of the most probable classes may hold the label."
    )
    class_weights: str = Field(
        "none",
        description="Per-class loss weights: none | balanced (sklearn compute_class_weight on the training split) | "
        "a YAML/JSON/CSV file of class: weight (unlisted classes 1.0). Validation loss stays unweighted.",
    )
    loss: Literal["ce", "focal", "bce", "asl", "mse", "huber"] = Field(
        "ce",
        description="Training loss: ce (cross-entropy) | focal (softmax focal loss; composes with label smoothing, "
        "mixup and class_weights by acting on the soft target). Multilabel: bce (the default there) | asl "
        "(timm's asymmetric loss) | focal (sigmoid focal). Regression: mse (the default there) | huber.",
    )
    focal_gamma: float = Field(
        2.0, ge=0.0, le=10.0, description="train.loss=focal: focusing exponent (0 = cross-entropy)."
    )

    @field_validator("time_cost")
    @classmethod
    def _positive_cost(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        if value is not None and (min(value) < 0 or value[1] <= 0):
            raise ValueError("needs a >= 0 and b > 0 (seconds per image = a + b*size^2)")
        return value

    @field_validator("class_weights", mode="before")
    @classmethod
    def _no_weights(cls, value: Any) -> Any:
        return "none" if value is None else value  # YAML's `class_weights: null` (or ~) means none

    @field_validator("metric", mode="before")
    @classmethod
    def _known_metric(cls, name: Any) -> Any:
        if isinstance(name, str) and name not in METRICS:
            close = difflib.get_close_matches(name, METRICS, n=1, cutoff=0.5)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"unknown metric {_short_repr(name)}{hint}; choose one of {', '.join(METRICS)}")
        return name

    @property
    def monitored(self) -> str:
        """The metrics.csv column early stopping and the best checkpoint follow."""
        return self.monitor or f"val_{self.metric}"

    def smoothing(self, task: str = "multiclass") -> float:
        """``label_smoothing``, or its default for ``task`` when None: 0.1 for classes, 0 for label sets and values."""
        if self.label_smoothing is not None:
            return self.label_smoothing
        return 0.1 if task == "multiclass" else 0.0


class TTAConfig(_Section):
    mode: TTAMode = "none"
    views: list[str] = Field(
        default_factory=lambda: [
            "identity",
            "hflip",
            "center_crop",
            "crop_tl",
            "crop_tr",
            "crop_bl",
            "crop_br",
            "scale_1.15",
            "scale_0.87",
            "hflip_center_crop",
        ]
    )
    n: int = Field(2, ge=1, description="fixed: views run on every image.")
    aggregate: TTAAggregate = "mean_probs"
    first_views: int = Field(2, ge=1, description="adaptive: views every image gets (K).")
    uncertainty: TTAUncertainty = "margin"
    threshold: float = Field(0.2, ge=0.0, description="adaptive: margin below / entropy above this is uncertain.")
    stable_views: int = Field(3, ge=1, description="adaptive: stop once the top class held for S views.")
    max_views: int = Field(10, ge=1)
    budget: int | None = Field(None, ge=1, description="adaptive: cap on total forward passes (None = none).")


class TrackingConfig(_Section):
    enabled: bool = True
    uri: str | None = Field(
        None, description="MLflow tracking URI; None = MLFLOW_TRACKING_URI or a local SQLite store."
    )
    experiment: str = "imgclf"


class Config(_Section):
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    finetune: FinetuneConfig = FinetuneConfig()
    train: TrainConfig = TrainConfig()
    tta: TTAConfig = TTAConfig()
    tracking: TrackingConfig = TrackingConfig()

    @model_validator(mode="after")
    def _compatible(self) -> "Config":
        if self.finetune.strategy == "gradual" and self.train.epochs <= self.finetune.head_epochs:
            raise ValueError(
                f"finetune.strategy=gradual needs train.epochs ({self.train.epochs}) > finetune.head_epochs "
                f"({self.finetune.head_epochs}), or the backbone is never unfrozen"
            )
        if self.tta.first_views > self.tta.max_views:
            raise ValueError("tta.first_views must not exceed tta.max_views")
        return self

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def flat(self) -> dict[str, Any]:
        """``{"train.lr": 0.001, ...}`` — used for tracking params and run comparisons."""
        return flatten(self.to_dict())


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def known_keys() -> list[str]:
    return sorted(flatten(Config().to_dict()))


def _suggest(key: str) -> str:
    if "." not in key:
        # A top-level key is a misspelt section ("trian") or a key without its section ("epochs").
        close = difflib.get_close_matches(key, list(Config.model_fields), n=1, cutoff=0.6)
        by_leaf = {k.rsplit(".", 1)[-1]: k for k in known_keys()}
        close = close or [by_leaf[m] for m in difflib.get_close_matches(key, list(by_leaf), n=1, cutoff=0.8)]
        return f" (did you mean {close[0]!r}?)" if close else ""
    close = difflib.get_close_matches(key, known_keys(), n=1, cutoff=0.5)
    if not close:
        section = key.split(".")[0]
        close = difflib.get_close_matches(section, list(Config.model_fields), n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""


def set_in(tree: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``tree["a"]["b"] = value`` for ``dotted == "a.b"``, creating sections as needed."""
    parts = dotted.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"config key {dotted!r}: {part!r} is a value, not a section")
        node = child
    node[parts[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """``"train.lr=3e-4"`` → ``("train.lr", 0.0003)``; values are read as YAML scalars/lists."""
    if "=" not in text:
        raise ConfigError(f"--set expects key=value, got {text!r}")
    key, raw = text.split("=", 1)
    key = key.strip()
    try:
        value = load_yaml(raw) if raw.strip() else None
    except YAMLLimitError as exc:
        raise ConfigError(f"--set {key[:80]}: the value {exc}") from None
    except yaml.YAMLError:
        value = raw
    if isinstance(value, str) and _looks_like_float(value):
        value = float(value)  # YAML 1.1 reads "3e-4" as a string
    return key, value


def _looks_like_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A config file's sections, read by the bounded reader (:mod:`imgclf.safe_yaml`)."""
    data = read_yaml_file(path, what="config file") or {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections (data:, model:, train:, ...)")
    return data


def build_config(tree: dict[str, Any]) -> Config:
    """Validate a nested dict into a Config; every problem becomes one ConfigError line."""
    try:
        return Config.model_validate(_fix_floats(tree))
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None


def _fix_floats(tree: Any) -> Any:
    if isinstance(tree, dict):
        return {k: _fix_floats(v) for k, v in tree.items()}
    if (
        isinstance(tree, str)
        and _looks_like_float(tree)
        and tree.strip().lower() not in ("nan", "inf", "-inf", "infinity")
    ):
        return float(tree)
    return tree


def _describe(exc: ValidationError) -> str:
    problems = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            problems.append(f"unknown config key {key!r}{_suggest(key)}")
        elif err["type"] == "value_error":
            msg = err["msg"].removeprefix("Value error, ")
            problems.append(f"{key}: {msg}" if key else msg)
        else:
            value = err.get("input")
            shown = "" if isinstance(value, dict) else f" (got {_short_repr(value)})"
            problems.append(f"config key {key!r}: {err['msg'].lower()}{shown}")
    return "\n".join(problems)  # one line per problem: the CLI prints each as its own error line


def _short_repr(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters: an error line must stay one short line."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def load_config(
    path: str | Path | None = None, overrides: list[str] | None = None, base: dict[str, Any] | None = None
) -> Config:
    """Defaults → ``base`` dict → YAML file → ``key=value`` overrides, validated once."""
    tree: dict[str, Any] = {}
    if base:
        tree = _deep_merge(tree, base)
    if path is not None:
        tree = _deep_merge(tree, read_yaml(path))
    for text in overrides or []:
        key, value = parse_override(text)
        set_in(tree, key, value)
    return _without_secrets(build_config(tree))


def _without_secrets(cfg: Config) -> Config:
    """Refuse a config value that holds a secret (``--set tracking.experiment=exp-$TOKEN``): it would be
    written in clear where no masking reaches — an MLflow experiment name, a cache folder's name."""
    from imgclf.secrets import keys_holding_secrets

    keys = keys_holding_secrets(cfg.flat())
    if keys:
        raise ConfigError(
            f"config key {keys[0]!r} holds the value of a secret (a password, token or key of your environment): "
            "it would be written in clear, e.g. into MLflow or a folder name; choose a value without it"
        )
    return cfg


def _deep_merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for key, value in b.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def with_overrides(cfg: Config, values: dict[str, Any]) -> Config:
    """A copy of ``cfg`` with dotted keys replaced, validated again (used by ablations and sweeps)."""
    tree = cfg.to_dict()
    if "model.weights" in values and "model.backbone" not in values and cfg.model.weights in EMBEDDED_WEIGHTS:
        tree["model"]["backbone"] = None  # it was derived from the old weights
    for key, value in values.items():
        set_in(tree, key, value)
    return build_config(tree)


def save_config(cfg: Config, path: str | Path) -> None:
    from imgclf.io import atomic_write_text
    from imgclf.secrets import redact_tree

    # A tracking URI may carry a password: the saved copy never does (see imgclf.secrets).
    atomic_write_text(path, yaml.safe_dump(redact_tree(cfg.to_dict()), sort_keys=False))
