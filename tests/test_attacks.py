"""PGD and TRADES: the ε-ball, the image box, the loss formula, modes, RNG and gradients."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from corebench.compute.attacks import (
    pgd_attack,
    trades_adversary,
    trades_loss,
)
from corebench.core.checked import build
from corebench.core.errors import ConfigError
from corebench.core.spec import AttackConfig

from helpers import tiny_model

TOL = 1e-6






@pytest.fixture(scope="module")
def trained(digits):
    """The tiny net after a few quick epochs, so attacks have something to break."""
    model = tiny_model(digits.info)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    gen = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(4):
        for batch in torch.randperm(len(digits.x_train), generator=gen).split(64):
            loss = F.cross_entropy(model(digits.x_train[batch]), digits.y_train[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
    opt.zero_grad(set_to_none=True)
    return model.eval()


@pytest.fixture
def batch(digits):
    return digits.x_test[:64].clone(), digits.y_test[:64].clone()


def test_resolve_attack_defaults_follow_dataset(digits):
    att = AttackConfig().resolved(digits.info.eps)
    assert att == AttackConfig(eps=32 / 255, step_size=8 / 255, steps=10, random_start=True, trades_beta=6.0)
    att = AttackConfig(eps=8 / 255, step_size=0.01, steps=3).resolved(digits.info.eps)
    assert (att.eps, att.step_size, att.steps) == (8 / 255, 0.01, 3)
    with pytest.raises(ConfigError, match=r"^attack\.eps: -0\.1 is not allowed; allowed: a number in \(0, 1\]"):
        build(AttackConfig, {"eps": -0.1}, "attack")


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_pgd_stays_in_ball_and_box_and_leaves_model_alone(trained, batch, mode):
    model = copy.deepcopy(trained)
    model.train(mode == "train")
    x, y = batch
    eps = 32 / 255
    x_adv = pgd_attack(model, x, y, eps=eps, step_size=8 / 255, steps=10,
                       generator=torch.Generator().manual_seed(1))
    assert x_adv.shape == x.shape and not x_adv.requires_grad
    assert (x_adv - x).abs().max().item() <= eps + TOL
    assert x_adv.min().item() >= 0.0 and x_adv.max().item() <= 1.0
    assert model.training == (mode == "train")
    assert all(p.grad is None for p in model.parameters())


def test_pgd_increases_the_loss_and_lowers_accuracy(trained, batch):
    x, y = batch
    x_adv = pgd_attack(trained, x, y, eps=32 / 255, step_size=8 / 255, steps=10,
                       generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        clean_logits, adv_logits = trained(x), trained(x_adv)
    assert F.cross_entropy(adv_logits, y) > F.cross_entropy(clean_logits, y) + 0.5
    assert (adv_logits.argmax(1) == y).sum() < (clean_logits.argmax(1) == y).sum()


def test_pgd_one_step_without_start_is_fgsm(trained, batch):
    """Known answer: one step from x is clip(x + α·sign(∇ₓCE)) projected to the ball."""
    x, y = batch
    eps, alpha = 32 / 255, 0.05
    xg = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(F.cross_entropy(trained(xg), y, reduction="sum"), [xg])
    expected = (x + alpha * grad.sign()).clamp(0, 1)
    got = pgd_attack(trained, x, y, eps=eps, step_size=alpha, steps=1, random_start=False)
    torch.testing.assert_close(got, expected)
    same = pgd_attack(trained, x, y, eps=eps, step_size=alpha, steps=0, random_start=False)
    assert torch.equal(same, x)


def test_pgd_is_deterministic_for_a_seeded_generator(trained, batch):
    x, y = batch
    kw = dict(eps=32 / 255, step_size=8 / 255, steps=0)  # the random start alone
    a = pgd_attack(trained, x, y, generator=torch.Generator().manual_seed(5), **kw)
    b = pgd_attack(trained, x, y, generator=torch.Generator().manual_seed(5), **kw)
    c = pgd_attack(trained, x, y, generator=torch.Generator().manual_seed(6), **kw)
    assert torch.equal(a, b) and not torch.equal(a, c)
    state = torch.get_rng_state()
    pgd_attack(trained, x, y, eps=0.1, step_size=0.05, steps=2, generator=torch.Generator().manual_seed(5))
    assert torch.equal(state, torch.get_rng_state())  # an explicit generator: global RNG untouched


def _kl_batchmean(p_logits: torch.Tensor, q_logits: torch.Tensor) -> torch.Tensor:
    """KL(p || q) = Σ p (log p − log q), averaged over the batch, written out by hand."""
    log_p, log_q = F.log_softmax(p_logits, 1), F.log_softmax(q_logits, 1)
    return (log_p.exp() * (log_p - log_q)).sum(1).mean()


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_trades_loss_matches_its_formula(trained, batch, mode):
    x, y = batch
    beta, eps, step = 6.0, 32 / 255, 8 / 255
    model = copy.deepcopy(trained).train(mode == "train")
    reference = copy.deepcopy(model)  # BatchNorm running stats move during trades_loss

    loss, logits = trades_loss(model, x, y, beta=beta, eps=eps, step_size=step, steps=5,
                               generator=torch.Generator().manual_seed(3))
    assert model.training == (mode == "train")

    reference.eval()
    x_adv = trades_adversary(reference, x, eps=eps, step_size=step, steps=5,
                             generator=torch.Generator().manual_seed(3))
    assert (x_adv - x).abs().max().item() <= eps + TOL
    assert x_adv.min().item() >= 0.0 and x_adv.max().item() <= 1.0
    reference.train()
    nat, adv = reference(x), reference(x_adv)
    expected = F.cross_entropy(nat, y) + beta * _kl_batchmean(nat, adv)
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(logits, nat)
    assert _kl_batchmean(nat, adv) > 0


def test_trades_gradient_equals_reference_two_pass_form(trained, batch):
    """The reference runs f(x) twice in train mode; reusing the logits gives the same gradient."""
    x, y = batch
    ours, ref = copy.deepcopy(trained), copy.deepcopy(trained)
    loss, _ = trades_loss(ours, x, y, beta=6.0, eps=0.1, step_size=0.03, steps=3,
                          generator=torch.Generator().manual_seed(0))
    loss.backward()

    ref.eval()
    x_adv = trades_adversary(ref, x, eps=0.1, step_size=0.03, steps=3, generator=torch.Generator().manual_seed(0))
    ref.train()
    loss_natural = F.cross_entropy(ref(x), y)
    loss_robust = F.kl_div(F.log_softmax(ref(x_adv), 1), F.softmax(ref(x), 1), reduction="sum") / len(x)
    (loss_natural + 6.0 * loss_robust).backward()
    for p, q in zip(ours.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-5)  # conv biases before BN: ~0


def test_trades_with_beta_zero_is_cross_entropy(trained, batch):
    x, y = batch
    model = copy.deepcopy(trained).eval()
    loss, _ = trades_loss(model, x, y, beta=0.0, eps=0.1, step_size=0.03, steps=2,
                          generator=torch.Generator().manual_seed(0))
    assert not model.training
    model.train()
    torch.testing.assert_close(loss, F.cross_entropy(model(x), y))


def test_trades_start_is_small_gaussian_noise(trained, batch):
    x, _ = batch
    x_adv = trades_adversary(trained, x, eps=0.1, step_size=0.03, steps=0,
                             generator=torch.Generator().manual_seed(0))
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(x_adv, (x + 0.001 * noise).clamp(0, 1))
