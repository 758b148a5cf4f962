"Tests of crvae.bound: the reparameterised sample, the closed-form KL and its per-step split."
import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from crvae.core import UserError
from crvae.bound import (reparameterize, kl_diag_gaussians, kl_per_step, weighted_kl, kl_step_weights,
                         effective_sigma, code_alphas_as_paper)


def test_reparameterize_moments_and_seed():
    mu, lv = torch.tensor([0.5, -1.0]), torch.tensor([0.0, math.log(9.0)])
    z = reparameterize(mu.expand(100_000, 2), lv.expand(100_000, 2), torch.Generator().manual_seed(0))
    assert torch.allclose(z.mean(0), mu, atol=0.03) and torch.allclose(z.std(0), torch.tensor([1.0, 3.0]), atol=0.03)
    g = lambda: torch.Generator().manual_seed(7)
    assert torch.equal(reparameterize(mu, lv, g()), reparameterize(mu, lv, g()))


@pytest.mark.parametrize('shape', [(3, 7), (2, 64, 4, 4)])
def test_kl_matches_torch_distributions(shape):
    torch.manual_seed(0)
    mq, lq, mp, lp = (torch.randn(shape, dtype=torch.float64) for _ in range(4))
    ref = kl_divergence(Normal(mq, (0.5 * lq).exp()), Normal(mp, (0.5 * lp).exp()))
    assert torch.allclose(kl_diag_gaussians(mq, lq, mp, lp), ref)
    ref0 = kl_divergence(Normal(mq, (0.5 * lq).exp()), Normal(torch.zeros(()), torch.ones(()))).double()
    assert torch.allclose(kl_diag_gaussians(mq, lq), ref0)
    assert torch.allclose(kl_diag_gaussians(mq, lq, reduction='sum'), ref0.reshape(shape[0], -1).sum(1))
    with pytest.raises(UserError): kl_diag_gaussians(mq, lq, reduction='mean')


def test_kl_per_step_blocks_are_channel_slices():
    torch.manual_seed(1)
    mu, lv = torch.randn(2, 64, 4, 4), torch.randn(2, 64, 4, 4)
    ks = kl_per_step(mu, lv, 8)
    assert ks.shape == (2, 8)
    for t in range(8):
        ref = kl_diag_gaussians(mu[:, 8*t:8*t+8], lv[:, 8*t:8*t+8], reduction='sum')
        assert torch.allclose(ks[:, t], ref, atol=1e-4)
    # a conditional prior, and flat latents cut into T equal slices
    mp, lp = torch.randn_like(mu), torch.randn_like(lv)
    assert torch.allclose(kl_per_step(mu, lv, 8, mp, lp).sum(1), kl_diag_gaussians(mu, lv, mp, lp, 'sum'), atol=1e-3)
    assert torch.allclose(kl_per_step(mu.flatten(1), lv.flatten(1), 8), ks, atol=1e-4)
    with pytest.raises(UserError, match='must divide'): kl_per_step(mu, lv, 7)


def test_weighted_kl_and_the_two_forms():
    ks = torch.rand(3, 8)
    a = [3e-4] * 3 + [2e-4] * 5
    assert torch.allclose(weighted_kl(ks, a), (ks * torch.tensor(a)).sum(1))
    with pytest.raises(UserError, match='one weight per step'): weighted_kl(ks, [1.0])
    assert torch.allclose(kl_step_weights([0.1, 0.2], 'paper'), torch.tensor([0.9, 0.8]))
    with pytest.raises(UserError): kl_step_weights(a, 'other')
    # alpha per nat against a per-pixel mean MSE over 3*64*64 values = a Gaussian decoder with sigma^2 = 12288 alpha / 2
    assert effective_sigma(3e-4) == pytest.approx(math.sqrt(12288 * 3e-4 / 2))
    pa, sig = code_alphas_as_paper(a)
    assert pa == pytest.approx([0, 0, 0, 1/3, 1/3, 1/3, 1/3, 1/3]) and sig == pytest.approx(1.3576, abs=1e-4)


def test_elbo_below_log_likelihood_and_tight_at_posterior():
    "1-D conditional linear-Gaussian: z|a ~ N(a, 1), x|z ~ N(2z, 0.5^2); closed-form log p(x|a) and posterior."
    a, x, s = 0.7, 2.0, 0.5
    log_px = Normal(2 * a, math.sqrt(4 + s**2)).log_prob(torch.tensor(x)).item()
    pv = 1 / (1 + 4 / s**2); pm = pv * (a + 2 * x / s**2)
    def elbo(m, v, n=50_000):
        mu, lv = torch.full((n,), m, dtype=torch.float64), torch.full((n,), math.log(v), dtype=torch.float64)
        z = reparameterize(mu, lv, torch.Generator().manual_seed(0))
        rec = Normal(2 * z, s).log_prob(torch.tensor(x, dtype=torch.float64))
        kl = kl_diag_gaussians(mu[:1], lv[:1], torch.tensor([a], dtype=torch.float64), torch.zeros(1, dtype=torch.float64))
        return (rec.mean() - kl.sum()).item(), (rec.std() / math.sqrt(n)).item()
    e, se = elbo(0.0, 1.0)
    assert e < log_px - 10 * se
    e, se = elbo(pm, pv)
    assert abs(e - log_px) < 4 * se + 1e-9
