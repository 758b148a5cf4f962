"Tests of crvae.models: released parameter counts, the common interface of all 10 models, configs and `crvae info`."
import json

import pytest
import torch

from crvae.core import UserError, config_from_dict
from crvae.models import (MODEL_NAMES, CONDITIONAL, WITH_GAN, ModelConfig, model_config, build_model,
                          FaceModel)
from crvae.param_counts import model_info, RELEASED_COUNTS, RELEASED_GENERATOR, param_table, count_params
import dataclasses


@pytest.fixture(scope='module')
def paper_infos():
    return {n: model_info(n, 'paper') for n in MODEL_NAMES}


def test_paper_counts_within_one_percent(paper_infos):
    for n in MODEL_NAMES:
        i = paper_infos[n]
        print(f"{n:11s} generator {i['generator']:>10,d}  discriminator {i['discriminator']:>10,d}  total {i['total']:>10,d}")
    for n, ref in RELEASED_COUNTS.items(): assert abs(paper_infos[n]['total'] / ref - 1) < 0.01, n
    for n, ref in RELEASED_GENERATOR.items(): assert abs(paper_infos[n]['generator'] / ref - 1) < 0.01, n
    assert RELEASED_COUNTS == {'crvae-gan': 20.53e6, 'vae-gan': 22.80e6, 'ccrvae-gan': 20.43e6, 'acvae-gan': 18.55e6}
    cr = paper_infos['crvae-gan']['parts']
    assert [round(cr[k] / 1e6, 2) for k in ('encoder', 'var_path', 'gen_path', 'decoder')] == [2.70, 4.27, 3.48, 2.55]
    assert round(paper_infos['vae-gan']['parts']['encoder'] / 1e6, 2) == 10.94
    ac = paper_infos['acvae-gan']['parts']
    assert ac['attn'] == 320 and round(ac['prior_net'] / 1e6, 2) == 0.25


def test_meta_count_equals_real_count():
    cfg = model_config('acvae-gan', 'paper')
    assert count_params(build_model('acvae-gan', cfg)) == model_info('acvae-gan', 'paper')['total']


@pytest.mark.parametrize('name', MODEL_NAMES)
def test_tiny_interface(name):
    torch.manual_seed(0)
    m = build_model(name, model_config(name, 'tiny'))
    assert isinstance(m, FaceModel) and m.name == name and m.T == 8
    assert m.conditional == (name in CONDITIONAL) and m.has_discriminator == (name in WITH_GAN)
    assert (m.D is None) == (name not in WITH_GAN)
    assert 0.3e6 < count_params(m) < 3.5e6
    B = 3
    x = torch.rand(B, 3, 64, 64) * 2 - 1
    a = (torch.randint(0, 2, (B, m.n_attrs)) * 2 - 1).float() if m.conditional else None
    with torch.no_grad():
        mu_p, lv_p = m.prior(a, n=B)
        assert mu_p.shape == lv_p.shape == (B, *m.latent_shape)
        z = m.sample_z(a, n=B)
        assert z.shape == (B, *m.latent_shape)
        assert m.blocks(z).shape[:2] == (B, m.T) and torch.equal(m.unblocks(m.blocks(z)), z)
        assert m.transformed(z, a).shape == (B, *m.u_shape)
        xs = m.sample(a, n=B)
        assert xs.shape == (B, 3, 64, 64) and xs.abs().max() <= 1
        if m.has_encoder:
            mu, lv = m.encode(x, a)
            assert mu.shape == lv.shape == (B, *m.latent_shape)
            assert m(x, a)['x_rec'].shape == x.shape
        else:
            with pytest.raises(UserError, match='no encoder'): m.encode(x, a)
        if m.D is not None:
            d = m.D(x, a)
            assert d['logit'].shape == d['prob'].shape == (B,)
            assert torch.allclose(d['prob'], torch.sigmoid(d['logit']))
            if m.cfg.mi: assert d['mi'].shape == (B, *m.u_shape)
            else: assert d['mi'] is None
    if name == 'acvae-gan':
        assert m.attention.shape == (8, m.n_attrs) and torch.allclose(m.attention.sum(0), torch.ones(m.n_attrs))
    else: assert m.attention is None


@pytest.mark.parametrize('name', ['crvae-gan', 'acvae-gan', 'cvae-gan', 'vae'])
def test_seeded_sampling_reproducible(name):
    m = build_model(name).eval()
    a = torch.ones(m.n_attrs) if m.conditional else None
    with torch.no_grad():
        s1 = m.sample(a, n=2, generator=torch.Generator().manual_seed(5))
        s2 = m.sample(a, n=2, generator=torch.Generator().manual_seed(5))
        s3 = m.sample(a, n=2, generator=torch.Generator().manual_seed(6))
    assert torch.equal(s1, s2) and not torch.equal(s1, s3)


def test_conditional_models_use_attributes():
    m = build_model('acvae-gan').eval()
    z = m.sample_z(torch.ones(32), n=2, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        x1, x2 = m.decode(z, torch.ones(2, 32)), m.decode(z, -torch.ones(2, 32))
        assert not torch.equal(x1, x2)
        mu1, _ = m.prior(torch.ones(2, 32)); mu2, _ = m.prior(-torch.ones(2, 32))
        assert not torch.equal(mu1, mu2)
    with pytest.raises(UserError, match='pass the attributes'): m.sample(n=2)
    with pytest.raises(UserError, match='expects attributes'): m.prior(torch.zeros(2, 7))


def test_generation_path_causal_in_model():
    m = build_model('ccrvae-gan').eval()
    a = torch.ones(2, 32)
    z = torch.randn(2, *m.latent_shape)
    with torch.no_grad():
        u = m.blocks(m.transformed(z, a))
        b = m.blocks(z).clone(); b[:, 3] += 1
        d = (m.blocks(m.transformed(m.unblocks(b), a)) - u).abs().amax((0, 2))
    assert (d[:3] == 0).all() and (d[3:] > 0).all()


def test_overrides_and_validation():
    c = model_config('crvae-gan', 'paper', sets=['kappa=0', 'beta=0.1', 'kl_form=paper'])
    assert (c.kappa, c.beta, c.kl_form) == (0.0, 0.1, 'paper')
    assert model_config('acvae-gan', n_attrs=40).n_attrs == 40
    assert model_config('acvae-gan', 'paper', sets=['rho=0']).rho == 0.0
    assert model_config('vae-gan', sets=['mi=true']).mi is True
    assert build_model('vae-gan', model_config('vae-gan', sets=['mi=true'])).D.mi_head is not None
    with pytest.raises(UserError, match='did you mean kappa'): model_config('crvae-gan', sets=['kapa=1'])
    with pytest.raises(UserError, match='did you mean'): model_config('crvae-gna')
    with pytest.raises(UserError): model_config('crvae-gan', sets=['T=3'])
    with pytest.raises(UserError): model_config('crvae-gan', sets=['d_batch=halves'])
    with pytest.raises(UserError, match='progressive'): model_config('crvae-gan', image_size=128)
    with pytest.raises(UserError, match='not crvae'): build_model('crvae', model_config('crvae-gan'))
    c = model_config('acvae-gan', 'paper')
    assert config_from_dict(ModelConfig, json.loads(json.dumps(dataclasses.asdict(c)))) == c


def test_info_cli(run_cli):
    code, out, err = run_cli('info', 'acvae-gan', '--config', 'paper', '--json')
    assert code == 0, err
    d = json.loads(out)
    assert d['model'] == 'acvae-gan' and abs(d['total'] / 18.55e6 - 1) < 0.01
    code, out, err = run_cli('info', 'crvae-gan', '--config', 'paper')
    assert code == 0 and '| total |' in out and 'var_path' in out
    code, out, err = run_cli('info', 'all', '--config', 'tiny', '--json')
    assert code == 0 and [r['model'] for r in json.loads(out)] == list(MODEL_NAMES)
    code, out, err = run_cli('info', 'crvae-gann')
    assert code == 2 and 'did you mean crvae-gan' in err and len(err.strip().splitlines()) == 1
    code, out, err = run_cli('info', 'crvae-gan', '--config', 'huge')
    assert code == 2 and 'tiny or paper' in err
    code, out, err = run_cli('info', 'crvae-gan', '--set', 'kappa=0', '--set', 'lstm_hidden=128', '--json')
    assert code == 0 and json.loads(out)['total'] < model_info('crvae-gan')['total']


@pytest.mark.parametrize('name', ['crvae-gan', 'acvae-gan', 'vae-gan', 'cvae-gan', 'conv-vae'])
def test_decoding_reads_only_the_decoder_keys(name):
    "Two models differing in every weight and BatchNorm statistic decode alike once the `decoder_keys` entries are copied."
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0); a = build_model(name)
        torch.manual_seed(1); b = build_model(name)
        for m in (a, b):
            for buf in m.buffers():
                if buf.is_floating_point(): buf.uniform_(0.5, 1.5)
        keys, sd = a.decoder_keys(), a.state_dict()
        assert 0 < len(keys) < len(sd) and not any(k.startswith(('D.', 'encoder.')) for k in keys)
        b.load_state_dict({k: sd[k] for k in keys}, strict=False)
        a.eval(); b.eval()
        z = torch.randn(3, *a.latent_shape)
        attrs = torch.randn(3, a.n_attrs).sign() if a.conditional else None
        assert torch.equal(a.decode(z, attrs), b.decode(z, attrs))
