"""Random 5-fold CV of biased SVD on ML-100K at Surprise's defaults, and the u1-u5 folds.

Surprise publishes RMSE 0.934 / MAE 0.737 for SVD on ML-100K 5-fold CV; measured here
with Surprise itself: 0.9344 ± 0.0064. ``ml100k_5fold`` reproduces Surprise's
``KFold(n_splits=5, random_state=0)`` folds exactly.

    RECTUNE_DATA=../shared/data python benchmarks/cv_svd.py
"""

from __future__ import annotations

import os
from pathlib import Path

from rectune.data import load_movielens, ml100k_5fold, predefined_folds
from rectune.evaluate import cross_validate
from rectune.models import SVD


def main() -> None:
    root = Path(os.environ.get("RECTUNE_DATA", Path(__file__).parents[2] / "shared" / "data"))
    ds = load_movielens("ml-100k", path=root / "ml-100k")
    print("| folds | RMSE (mean ± std) | MAE (mean ± std) |")
    print("|---|---|---|")
    for name, folds in [("random 5-fold, Surprise KFold(5, random_state=0)", ml100k_5fold(ds)),
                        ("predefined u1–u5", predefined_folds(ds))]:
        s = cross_validate(lambda: SVD(random_state=0), folds).summary()
        print(f"| {name} | {s['rmse']['mean']:.4f} ± {s['rmse']['std']:.4f} | "
              f"{s['mae']['mean']:.4f} ± {s['mae']['std']:.4f} |")


if __name__ == "__main__":
    main()
