"""The experiment file: a TOML document validated into typed sections.

Why a schema: an experiment that runs for minutes must not die at the end on a
misspelt metric. Every section is a pydantic model with ``extra="forbid"`` (except
``[finetune]``, whose keys belong to the fine-tuning engine), every model class
and its hyper-parameters are checked *before* anything is fitted, and an error
names the file and the dotted field (``models[2].params.n_factors``).

Sections::

    [experiment]  name, description, seed
    [data]        name = "ml-100k" | path = "..." | synthetic = 100000;
                  fallback = "synthetic" | "error"
    [split]       protocol = "ml100k_temporal" | method = "random"|"user"|"temporal"|"last"
    [[models]]    class = "SVD", label, params = {...}, arms = [...], finetune = {...}
    [finetune]    enabled, and FinetuneConfig keyword arguments
    [metrics]     k, ranking, relevance_threshold, beyond, n_boot, exclude, reference
    [report]      html, title, save_models
    [mlflow]      enabled, experiment, tracking_uri
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from rectune._errors import DataError, RectuneError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

__all__ = [
    "ARMS",
    "DataConfig",
    "ExperimentConfig",
    "MetricsConfig",
    "ModelConfig",
    "SplitConfig",
    "load_config",
    "resolve_model_class",
]

ARMS: tuple[str, ...] = ("pretrain", "scratch", "retrain", "finetune")
"""Temporal arms: fitted on the oldest slice, on the new slice only, on both, and the
pre-trained model fine-tuned on the new slice."""

_MODEL_MODULES: dict[str, str] = {
    "Popularity": "rectune.models.popularity",
    "Baseline": "rectune.models.baseline",
    "SVD": "rectune.models.mf",
    "SVDpp": "rectune.models.mf",
    "NMF": "rectune.models.mf",
    "UserKNN": "rectune.models.knn",
    "ItemKNN": "rectune.models.knn",
    "ImplicitItemKNN": "rectune.models.knn",
    "ALS": "rectune.models.als",
    "BPR": "rectune.models.bpr",
    "EASE": "rectune.models.ease",
}


def resolve_model_class(name: str) -> type:
    """A model class from its short name (``"SVD"``) or dotted path inside rectune.

    Looks in :mod:`rectune.models` first (the public names), then in the module that
    implements the family, so a model works before it is re-exported.
    """
    from rectune.models.base import Recommender

    if not isinstance(name, str) or not name:
        raise RectuneError(f"model class must be a non-empty string, got {name!r}")
    candidates: list[tuple[str, str]] = []
    if "." in name:
        if not name.startswith("rectune."):
            raise RectuneError(f"model class {name!r}: only classes inside rectune are allowed")
        mod, _, qual = name.rpartition(".")
        candidates.append((mod, qual))
    else:
        candidates.append(("rectune.models", name))
        if name in _MODEL_MODULES:
            candidates.append((_MODEL_MODULES[name], name))
    for mod, qual in candidates:
        try:
            cls = getattr(importlib.import_module(mod), qual)
        except (ImportError, AttributeError):
            continue
        if isinstance(cls, type) and issubclass(cls, Recommender):
            return cls
    known = ", ".join(sorted(_MODEL_MODULES))
    raise RectuneError(f"unknown model class {name!r} (not found in this installation); "
                       f"known names: {known}, or a dotted path rectune.models.<module>.<Class>")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ExperimentSection(_Strict):
    name: str = "experiment"
    description: str = ""
    seed: int = 0


class DataConfig(_Strict):
    """Where the ratings come from; exactly one of ``name``, ``path``, ``synthetic``."""

    name: str | None = None
    path: str | None = None
    synthetic: int | None = Field(default=None, gt=0)
    synthetic_seed: int = 0
    fallback: Literal["synthetic", "error"] = "synthetic"
    fallback_ratings: int = Field(default=100_000, gt=0)

    @field_validator("synthetic")
    @classmethod
    def _min_size(cls, v: int | None) -> int | None:
        if v is not None and v < 100:
            raise ValueError("a synthetic data set needs at least 100 ratings")
        return v

    def check(self) -> None:
        given = [k for k in ("name", "path", "synthetic") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of name, path, synthetic (got {given or 'none'})")


class SplitConfig(_Strict):
    """A named preset (``protocol``) or a split method with its parameters."""

    protocol: str | None = None
    method: Literal["random", "user", "temporal", "last"] | None = None
    test_fraction: float = Field(default=0.2, gt=0, lt=1)
    train_fraction: float | None = Field(default=None, gt=0, lt=1)
    new_fraction: float = Field(default=0.0, ge=0, lt=1)
    seed: int = 0

    def check(self) -> None:
        if (self.protocol is None) == (self.method is None):
            raise ValueError("give exactly one of protocol (a preset name) or method")


class ModelConfig(_Strict):
    """One ``[[models]]`` entry: a class, its hyper-parameters and (temporal) its arms."""

    cls: str = Field(alias="class")
    label: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    task: Literal["auto", "rating", "ranking"] = "auto"
    arms: list[Literal["pretrain", "scratch", "retrain", "finetune"]] | None = None
    finetune: dict[str, Any] = Field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.label or self.cls.rpartition(".")[2]


class FinetuneSection(BaseModel):
    """``enabled`` plus free keyword arguments for ``rectune.finetune.FinetuneConfig``."""

    model_config = ConfigDict(extra="allow")
    enabled: bool = True

    def kwargs(self, override: dict[str, Any]) -> dict[str, Any]:
        base = {k: v for k, v in (self.model_extra or {}).items()}
        base.update(override)
        return base


RankingName = Literal["precision", "recall", "ndcg", "map", "mrr", "hit_rate"]
RatingName = Literal["rmse", "mae"]


def _default_ranking() -> list[RankingName]:
    return ["ndcg", "precision", "recall", "map", "mrr", "hit_rate"]


def _default_rating() -> list[RatingName]:
    return ["rmse", "mae"]


class MetricsConfig(_Strict):
    k: int | list[int] = 10
    ranking: list[RankingName] = Field(default_factory=_default_ranking)
    rating: list[RatingName] = Field(default_factory=_default_rating)
    relevance_threshold: float | None = 4.0
    beyond: bool = True
    n_boot: int = Field(default=1000, ge=10)
    exclude: Literal["train", "none"] = "train"
    per_user: bool = False
    reference: str | None = None

    @property
    def ks(self) -> list[int]:
        ks = [self.k] if isinstance(self.k, int) else list(self.k)
        if not ks or any(x <= 0 for x in ks):
            raise ValueError(f"k must be positive, got {self.k!r}")
        return sorted(set(ks))


class ReportSection(_Strict):
    html: bool = True
    title: str | None = None
    save_models: bool = False


class MlflowSection(_Strict):
    enabled: bool = False
    experiment: str | None = None
    tracking_uri: str | None = None


class ExperimentConfig(_Strict):
    """The whole experiment file."""

    experiment: ExperimentSection = Field(default_factory=ExperimentSection)
    data: DataConfig
    split: SplitConfig
    models: list[ModelConfig] = Field(min_length=1)
    finetune: FinetuneSection = Field(default_factory=FinetuneSection)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    report: ReportSection = Field(default_factory=ReportSection)
    mlflow: MlflowSection = Field(default_factory=MlflowSection)

    def labels(self) -> list[str]:
        return [m.name for m in self.models]


def _field_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def parse_config(doc: dict[str, Any], source: str = "<experiment>") -> ExperimentConfig:
    """Validate a parsed TOML document; errors name ``source`` and the field."""
    try:
        cfg = ExperimentConfig.model_validate(doc)
        cfg.data.check()
        cfg.split.check()
        _ = cfg.metrics.ks
    except ValidationError as exc:
        msgs = "; ".join(f"{_field_path(e['loc']) or '(top level)'}: {e['msg']}"
                         for e in exc.errors())
        raise DataError(f"{source}: {msgs}") from None
    except ValueError as exc:
        raise DataError(f"{source}: {exc}") from None
    labels = cfg.labels()
    dup = sorted({x for x in labels if labels.count(x) > 1})
    if dup:
        raise DataError(f"{source}: models share the label(s) {dup}; give each a unique `label`")
    for j, m in enumerate(cfg.models):
        try:
            cls = resolve_model_class(m.cls)
            model = cls(**m.params)
            model._validate_params()
        except TypeError as exc:
            raise DataError(f"{source}: models[{j}] ({m.cls}): bad params: {exc}") from None
        except RectuneError as exc:
            raise DataError(f"{source}: models[{j}] ({m.cls}): {exc}") from None
    return cfg


def load_config(path: str | Path) -> ExperimentConfig:
    """Read and validate an experiment TOML file."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: experiment file not found")
    try:
        doc = tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise DataError(f"{p}: not valid TOML ({exc})") from None
    return parse_config(doc, str(p))
