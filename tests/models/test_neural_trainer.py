"""The shared neural trainer, losses and negative sampling."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from rectune._errors import DataError, RectuneError
from rectune.models.neural.losses import bce_loss, bpr_loss, mse_loss
from rectune.models.neural.sampling import NegativeSampler, PairwiseBatches, PointwiseBatches
from rectune.models.neural.trainer import DivergenceError, TrainConfig, Trainer

torch.set_num_threads(1)


# --------------------------------------------------------------------- fixtures
def _regression(seed: int = 0, n: int = 512) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)).astype(np.float32)
    w = rng.normal(size=6).astype(np.float32)
    y = (x @ w + 0.1 * rng.normal(size=n)).astype(np.float32)
    return x, y


def _setup(cfg: TrainConfig, *, validate: bool = False, dropout: float = 0.2
           ) -> tuple[Trainer, torch.nn.Module]:
    x, y = _regression()
    xv, yv = _regression(1, 128)
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(),
                                 torch.nn.Dropout(dropout), torch.nn.Linear(16, 1))

    def batches(rng: np.random.Generator) -> Iterator[dict[str, torch.Tensor]]:
        order = rng.permutation(len(x))
        for s in range(0, len(x), 64):
            r = order[s:s + 64]
            yield {"x": torch.from_numpy(x[r]), "y": torch.from_numpy(y[r])}

    def loss(m: torch.nn.Module, b: dict[str, torch.Tensor]) -> torch.Tensor:
        return mse_loss(m(b["x"]).squeeze(-1), b["y"])

    def val(m: torch.nn.Module) -> float:
        return -float(mse_loss(m(torch.from_numpy(xv)).squeeze(-1), torch.from_numpy(yv)))

    tr = Trainer(module, loss, batches, cfg, validate=val if validate else None, n_batches=8)
    return tr, module


def _weights(m: torch.nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy().copy() for k, v in m.state_dict().items()}


# ----------------------------------------------------------------------- trainer
def test_training_reduces_loss_and_records_history() -> None:
    tr, _ = _setup(TrainConfig(epochs=5, lr=1e-2, progress=False))
    hist = tr.fit()
    assert [h["epoch"] for h in hist] == [1, 2, 3, 4, 5]
    assert hist[-1]["loss"] < hist[0]["loss"] * 0.5
    assert tr.device.type in ("cpu", "cuda")


def test_determinism_and_caller_rng_untouched() -> None:
    a, ma = _setup(TrainConfig(epochs=3, seed=7, progress=False))
    a.fit()
    b, mb = _setup(TrainConfig(epochs=3, seed=7, progress=False))
    b.fit()
    c, mc = _setup(TrainConfig(epochs=3, seed=8, progress=False))
    c.fit()
    wa, wb, wc = _weights(ma), _weights(mb), _weights(mc)
    for k in wa:
        np.testing.assert_array_equal(wa[k], wb[k])
    assert any(not np.array_equal(wa[k], wc[k]) for k in wa)
    # the trainer runs on its own torch stream: the global one is not advanced by dropout
    torch.manual_seed(5)
    tr, _ = _setup(TrainConfig(epochs=1, progress=False))
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    tr.fit()
    np.testing.assert_array_equal(torch.rand(3).numpy(), expected.numpy())


def test_early_stopping_restores_best_weights() -> None:
    # a large lr makes validation oscillate, so the best epoch is not the last one
    tr, module = _setup(TrainConfig(epochs=30, lr=0.3, optimizer="sgd", patience=2,
                                    clip_grad=None, progress=False, max_loss=1e12),
                        validate=True, dropout=0.0)
    snapshots: list[dict[str, np.ndarray]] = []
    original = tr._run_epoch

    def spy(advance: object) -> dict[str, float]:
        out = original(advance)  # type: ignore[arg-type]
        snapshots.append(_weights(module))
        return out

    tr._run_epoch = spy  # type: ignore[method-assign]
    hist = tr.fit()
    scores = [h["valid"] for h in hist]
    best = int(np.argmax(scores))
    assert tr.best_epoch == best + 1
    assert len(hist) == best + 1 + 2 or len(hist) == 30  # stopped after `patience` bad epochs
    if len(hist) < 30:
        assert tr.stopped_early
    for k, v in _weights(module).items():
        np.testing.assert_array_equal(v, snapshots[best][k])


def test_resume_equals_uninterrupted_run(tmp_path: Path) -> None:
    full, m_full = _setup(TrainConfig(epochs=4, seed=3, progress=False))
    full.fit()
    ck = str(tmp_path / "ck")
    part, _ = _setup(TrainConfig(epochs=2, seed=3, progress=False, checkpoint_dir=ck))
    part.fit()
    assert (tmp_path / "ck" / "checkpoint.pt").is_file()
    rest, m_rest = _setup(TrainConfig(epochs=4, seed=3, progress=False, checkpoint_dir=ck,
                                      resume=True))
    hist = rest.fit()
    assert [h["epoch"] for h in hist] == [1, 2, 3, 4]
    for k, v in _weights(m_full).items():
        np.testing.assert_array_equal(v, _weights(m_rest)[k], err_msg=k)
    # a checkpoint holds only tensors and plain values: it loads with weights_only=True
    state = torch.load(tmp_path / "ck" / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 4


def test_resume_refuses_a_foreign_checkpoint(tmp_path: Path) -> None:
    ck = str(tmp_path / "ck")
    tr, _ = _setup(TrainConfig(epochs=1, progress=False, checkpoint_dir=ck))
    tr.fit()
    other = torch.nn.Linear(3, 1)
    bad = Trainer(other, lambda m, b: m(b["x"]).sum(), lambda rng: iter(()),
                  TrainConfig(epochs=2, progress=False, checkpoint_dir=ck, resume=True))
    with pytest.raises(RectuneError, match="does not match"):
        bad.fit()


def test_divergence_guard_names_epoch_and_batch() -> None:
    tr, _ = _setup(TrainConfig(epochs=5, lr=1e6, optimizer="sgd", clip_grad=None,
                               progress=False, max_loss=1e4))
    with pytest.raises(DivergenceError, match=r"epoch \d+, batch \d+"):
        tr.fit()


def test_progress_bar_runs() -> None:
    tr, _ = _setup(TrainConfig(epochs=2, progress=True), validate=True)
    assert len(tr.fit()) == 2


def test_bad_config_raises() -> None:
    with pytest.raises(DataError, match="optimizer"):
        _setup(TrainConfig(optimizer="lbfgs"))
    with pytest.raises(DataError, match="resume"):
        _setup(TrainConfig(resume=True))
    with pytest.raises(DataError, match=r"CUDA|device"):
        if torch.cuda.is_available():
            raise DataError("device check skipped: CUDA present")
        _setup(TrainConfig(device="cuda"))


# ------------------------------------------------------------------------ losses
def _grad(f: object, *xs: torch.Tensor) -> list[torch.Tensor]:
    ts = [x.clone().requires_grad_(True) for x in xs]
    out = f(*ts)  # type: ignore[operator]
    out.backward()
    return [t.grad for t in ts]  # type: ignore[misc]


def test_mse_gradient_matches_formula() -> None:
    p = torch.tensor([1.0, 2.5, -0.3], dtype=torch.float64)
    y = torch.tensor([0.5, 3.0, 0.0], dtype=torch.float64)
    (g,) = _grad(lambda a: mse_loss(a, y), p)
    torch.testing.assert_close(g, 2 * (p - y) / 3)


def test_bce_gradient_matches_formula() -> None:
    x = torch.tensor([2.0, -1.0, 0.3, 40.0], dtype=torch.float64)
    y = torch.tensor([1.0, 0.0, 1.0, 0.0], dtype=torch.float64)
    w = torch.tensor([1.0, 2.0, 0.5, 1.0], dtype=torch.float64)
    (g,) = _grad(lambda a: bce_loss(a, y, w), x)
    torch.testing.assert_close(g, w * (torch.sigmoid(x) - y) / 4)
    ref = torch.nn.functional.binary_cross_entropy_with_logits(x, y, weight=w)
    torch.testing.assert_close(bce_loss(x, y, w), ref)


def test_bpr_gradient_matches_formula() -> None:
    pos = torch.tensor([1.0, 0.2], dtype=torch.float64)
    neg = torch.tensor([[0.5, 2.0, -1.0], [0.0, 0.2, 3.0]], dtype=torch.float64)
    gp, gn = _grad(bpr_loss, pos, neg)
    s = 1 - torch.sigmoid(pos[:, None] - neg)
    torch.testing.assert_close(gn, s / 6)
    torch.testing.assert_close(gp, -s.sum(1) / 6)


# ---------------------------------------------------------------------- sampling
def _seen(seed: int = 0, n_users: int = 60, n_items: int = 40) -> sp.csr_array:
    rng = np.random.default_rng(seed)
    m = rng.random((n_users, n_items)) < 0.8 * rng.random((n_users, 1))  # densities 0..0.8
    m[0] = True  # a user who has seen everything
    m[1] = False
    m[2] = True
    m[2, -1] = False  # exactly one free item
    return sp.csr_array(m.astype(np.float32))


@pytest.mark.parametrize("distribution", ["uniform", "popularity"])
def test_sampler_never_returns_a_positive(distribution: str) -> None:
    seen = _seen()
    s = NegativeSampler(seen, distribution=distribution)  # type: ignore[arg-type]
    users = np.repeat(np.arange(seen.shape[0]), 50)
    neg = s.sample(users, 4, np.random.default_rng(1))
    assert neg.shape == (len(users), 4)
    dense = seen.toarray() > 0
    ok = neg >= 0
    assert not dense[np.repeat(users, 4).reshape(-1, 4)[ok], neg[ok]].any()
    assert (neg[users == 0] == -1).all()  # nothing left to sample
    assert (neg[users != 0] >= 0).all()
    assert (neg[users == 2] == seen.shape[1] - 1).all()


def test_uniform_sampler_is_uniform_over_unseen_items() -> None:
    seen = sp.csr_array(np.array([[1, 0, 1, 0, 0, 1]], dtype=np.float32))
    neg = NegativeSampler(seen).sample(np.zeros(30_000, dtype=np.int64), 1,
                                       np.random.default_rng(0)).ravel()
    counts = np.bincount(neg, minlength=6)
    assert counts[[0, 2, 5]].sum() == 0
    np.testing.assert_allclose(counts[[1, 3, 4]] / 30_000, 1 / 3, atol=0.015)


def test_batch_sources_shapes_and_labels() -> None:
    seen = _seen()
    s = NegativeSampler(seen)
    u, i = seen.nonzero()
    pw = PointwiseBatches(u, i, s, neg_ratio=3, batch_size=100)
    batches = list(pw(np.random.default_rng(0)))
    assert len(batches) == len(pw)
    lab = torch.cat([b["label"] for b in batches]).numpy()
    assert lab.sum() == len(u)
    dense = seen.toarray() > 0
    for b in batches:
        neg = b["label"].numpy() == 0
        assert not dense[b["user"].numpy()[neg], b["item"].numpy()[neg]].any()
    pair = list(PairwiseBatches(u, i, s, n_neg=2, batch_size=64)(np.random.default_rng(0)))
    assert all(b["neg"].shape[1] == 2 for b in pair)
    assert sum(len(b["user"]) for b in pair) == int((u != 0).sum())  # user 0 is dropped
