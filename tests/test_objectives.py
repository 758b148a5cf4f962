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


# --- the objective as the released code specifies it (issue: models that learn what the papers show) -------------------------

def _bn_calls(module):
    "Record the batch size of every call of the first BatchNorm in `module`."
    bn = next(m for m in module.modules() if isinstance(m, torch.nn.BatchNorm2d))
    sizes = []
    h = bn.register_forward_hook(lambda m, i, o: sizes.append(i[0].shape[0]))
    return sizes, h


@pytest.mark.parametrize('form', ['joint', 'separate'])
def test_decoder_batch_one_pass_or_two(form, batch):
    "decoder_batch='joint' decodes reconstructions and prior samples in one BatchNorm batch; 'separate' (released) in two."
    x, a = batch
    m = build_model('crvae-gan', model_config('crvae-gan', 'tiny', decoder_batch=form))
    sizes, h = _bn_calls(m.decoder)
    generator_loss(m, x, a, n_prior=4)
    h.remove()
    assert sizes == ([12] if form == 'joint' else [8, 4])


@pytest.mark.parametrize('name', ['crvae-gan', 'vae-gan', 'acvae-gan'])
def test_eval_mode_uses_the_statistics_training_used(name, batch):
    "After a training pass (momentum 1: running statistics = that pass's), evaluation-mode decoding of the same codes gives"
    " the training-mode reconstructions, because reconstructions and prior samples were normalised together. With the"
    " released 'separate' passes the running statistics are the prior samples' and the reconstructions differ."
    x, a = batch
    diffs = {}
    for form in ('joint', 'separate'):
        torch.manual_seed(0)
        m = build_model(name, model_config(name, 'tiny', decoder_batch=form, mi_target='u', kappa=0.01, mi=True))
        for mod in m.modules():
            if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm): mod.momentum = 1.0
        m.train()
        with torch.no_grad():
            _, _, fakes = generator_loss(m, x, a, n_prior=8)
            m.eval()
            x_eval = m.render(fakes['u_rec'])
        diffs[form] = (x_eval - fakes['x_rec']).abs().max().item()
    assert diffs["joint"] < 0.02, diffs              # unbiased vs biased variance (16 rows) is the only difference
    assert diffs['separate'] > 5 * diffs['joint'], diffs


def test_discriminator_mi_is_not_scaled_by_kappa(batch):
    "kappa weighs the generator's MI term only; the MI head and trunk get the full per-block MI loss (released code)."
    x, a = batch
    torch.manual_seed(0)
    m = build_model('crvae-gan', model_config('crvae-gan', 'tiny', kappa=0.5))
    _, _, fakes = generator_loss(m, x, a, n_prior=4)
    total, terms = discriminator_loss(m, discriminator_batch(m, x, a, fakes))
    assert torch.isclose(total, terms['d_gan'] + terms['d_mi'])
    total, terms = discriminator_loss(m, discriminator_batch(m, x, a, fakes), gate=False)
    assert torch.isclose(total, terms['d_mi'])


@pytest.mark.parametrize('name', ['crvae-gan', 'acvae-gan'])
def test_real_and_reconstructed_rows_are_different_images(name, batch):
    "The discriminator's real quarter and its reconstruction quarter come from different images (released code)."
    x, a = batch
    torch.manual_seed(0)
    m = build_model(name, model_config(name, 'tiny'))
    _, _, fakes = generator_loss(m, x, a, n_prior=4)
    fakes['x_rec'] = x.clone()                      # a perfect 'reconstruction': each row is its own input image
    b = discriminator_batch(m, x, a, fakes)
    n = d_batch_sizes(8, m.conditional, m.has_encoder, m.cfg.d_batch)
    real, rec = b['x'][:n['real']], b['x'][n['real']:n['real'] + n['rec']]
    assert not any(torch.equal(r, q) for r in real for q in rec)


def test_paper_form_is_the_code_objective_in_nats(batch):
    "kl_form='paper' (crVAE eq. 1 with the equivalent alphas and decoder sigma) is the released objective divided by max alpha."
    x, a = batch
    totals = {}
    for form in ('code', 'paper'):
        torch.manual_seed(0)
        m = build_model('crvae-gan', model_config('crvae-gan', 'tiny', kl_form=form))
        torch.manual_seed(1)
        totals[form] = generator_loss(m, x, a, n_prior=4)[0]
    assert torch.isclose(totals['paper'], totals['code'] / max(model_config('crvae-gan').kl_alphas), rtol=1e-4)


def test_bound_notebook_equivalence_matches_the_switch():
    "The paper-form weights of the bound notebook's conversion: 1 - alpha'_t = alpha_t / max(alpha), sigma^2 = n max(alpha) / 2."
    from crvae.bound import code_alphas_as_paper
    from crvae.models import CR_ALPHAS
    alphas, sigma = code_alphas_as_paper(CR_ALPHAS)
    w = 1 - torch.tensor(alphas)
    assert torch.allclose(w, torch.tensor(CR_ALPHAS) / max(CR_ALPHAS))
    assert abs(3 * 64 * 64 / (2 * sigma ** 2) - 1 / max(CR_ALPHAS)) < 1e-6 / max(CR_ALPHAS)
