"Objectives on every model: finite named terms, gradients only where they belong, batch layouts."
import pytest
import torch

from crvae.models import MODEL_NAMES, WITH_GAN, CONDITIONAL, build_model, model_config
from crvae.objectives import (d_batch_sizes, discriminator_batch, discriminator_loss, generator_loss, kl_steps, mi_loss,
                              weighted_kl_loss)


@pytest.fixture(scope='module')
def batch():
    g = torch.Generator().manual_seed(0)
    return torch.rand(8, 3, 64, 64, generator=g) * 2 - 1, (torch.rand(8, 32, generator=g) > 0.5).float() * 2 - 1


@pytest.mark.parametrize('name', MODEL_NAMES)
def test_terms_and_gradient_routing(name, batch):
    x, a = batch
    torch.manual_seed(0)
    m = build_model(name, model_config(name, 'tiny'))
    total, terms, fakes = generator_loss(m, x, a)
    assert torch.isfinite(total) and all(torch.isfinite(torch.as_tensor(v)).all() for v in terms.values())
    expected = ({'pixel', 'kl'} if m.has_encoder else set()) | ({'gan_prior'} if name in WITH_GAN else set())
    assert expected <= set(terms), (name, sorted(terms))
    if name == 'acvae-gan': assert {'att_entropy', 'att_rowsum'} <= set(terms)
    total.backward()
    gen = [p for n, p in m.named_parameters() if not n.startswith('D.')]
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in gen)
    if m.D is None: return
    assert all(p.grad is None for p in m.D.parameters())
    assert all(p.requires_grad for p in m.D.parameters())          # unfrozen again afterwards
    m.zero_grad(set_to_none=True)
    b = discriminator_batch(m, x, a, fakes)
    n = d_batch_sizes(8, m.conditional, m.has_encoder, m.cfg.d_batch)
    assert len(b['x']) == sum(n.values()) and b['label'].sum() == n['real']
    dl, dterms = discriminator_loss(m, b)
    dl.backward()
    assert all(p.grad is None for p in gen)                        # fakes were detached
    assert 0 <= float(dterms['d_err']) <= 1


def test_conditional_prior_receives_kl_gradient(batch):
    x, a = batch
    m = build_model('cvae', model_config('cvae', 'tiny'))
    _, terms, _ = generator_loss(m, x, a)
    terms['kl'].backward()
    assert m.prior_net.mu.weight.grad.abs().sum() > 0


def test_kl_forms_and_mi_weights():
    mu, lv = torch.randn(4, 16, 2, 2), torch.randn(4, 16, 2, 2) * 0.1
    kt = kl_steps(mu, lv, 8)
    a = [3e-4] * 3 + [2e-4] * 5
    assert torch.isclose(weighted_kl_loss(kt, a, 'code'), (torch.tensor(a) * kt).sum())
    assert torch.isclose(weighted_kl_loss(kt, a, 'paper'), ((1 - torch.tensor(a)) * kt).sum())
    u = torch.randn(2, 8, 4, 4)
    w = [0.1, 1.5, 1.5, 1.25, 0.1, 0.1, 1, 1]
    pred = u.clone(); pred[:, 1] += 1                              # only block 1 wrong (channel 1 of 8 blocks of 1)
    assert torch.isclose(mi_loss(pred, u, w, 8), torch.tensor(1.5 / 8))


@pytest.mark.parametrize('cond,enc,form,B,exp', [(True, True, 'quarters', 128, (32, 32, 32, 32)),
                                                (True, True, 'thirds', 96, (32, 16, 16, 32)),
                                                (False, True, 'quarters', 128, (64, 32, 32, 0)),
                                                (True, False, 'quarters', 96, (32, 0, 32, 32))])
def test_d_batch_layouts(cond, enc, form, B, exp):
    assert tuple(d_batch_sizes(B, cond, enc, form).values()) == exp
