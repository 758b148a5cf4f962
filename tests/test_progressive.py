"Progressive growing to 128x128: names kept, alpha = 0 is the 64 px model, the schedule, exact resume mid fade-in, the CLI."
import pytest
import torch
import torch.nn.functional as F

import crvae.progressive as P
from crvae.core import UserError
from crvae.models import PROGRESSIVE_MODELS, build_model, model_config
from crvae.training import train
from crvae.runs import load, read_state, read_weights

KW = dict(progress=False, log_every=1, sample_every=0, ckpt_every=1000, sets=['batch_size=4'])


@pytest.fixture(scope='module')
def faces_128():
    "200 avatars at 128 px (the same faces as the first 200 of the 64 px sets)."
    from crvae.data import load_avatars
    return load_avatars(n=200, size=128, progress=False)


@pytest.fixture(scope='module')
def run64(faces_1k, tmp_path_factory):
    "A 64 px tiny acvae-gan trained for 2 steps."
    out = tmp_path_factory.mktemp('pg')/'run64'
    train('acvae-gan', out, steps=2, faces=faces_1k, **KW)
    return out


def same(a, b): return sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize('name', PROGRESSIVE_MODELS)
def test_grown_model_keeps_names_and_starts_as_the_64px_model(name):
    torch.manual_seed(0)
    m64 = build_model(name, model_config(name)).eval()
    m128 = P.grow(m64).eval()
    k64, k128 = m64.state_dict(), m128.state_dict()
    assert set(k64) <= set(k128) and all(k128[k].shape == v.shape for k, v in k64.items())
    assert {k.split('.grow.')[0] for k in set(k128) - set(k64) if '.grow.' in k} == {'encoder.conv', 'decoder', 'D.trunk'}
    a = torch.randn(2, m64.n_attrs).sign()
    x = torch.rand(2, 3, 128, 128) * 2 - 1
    with torch.no_grad():
        z = m64.sample_z(a, generator=torch.Generator().manual_seed(0))
        assert torch.equal(m128.decode(z, a), F.interpolate(m64.decode(z, a), scale_factor=2))
        assert torch.equal(m128.encode(x, a)[1], m64.encode(F.avg_pool2d(x, 2), a)[1])
        torch.manual_seed(3); l128 = m128.D(x, a)['logit']
        torch.manual_seed(3); assert torch.allclose(l128, m64.D(F.avg_pool2d(x, 2), a)['logit'])
        m128.set_alpha(1.0)
        assert all(float(m.alpha) == 1.0 for m in m128.fade_ins()) and len(m128.fade_ins()) == 3
        assert not torch.equal(m128.decode(z, a), F.interpolate(m64.decode(z, a), scale_factor=2))


def test_schedule_and_errors():
    assert [P.fade_alpha(s, 10) for s in (0, 1, 4, 5, 9)] == [0.0, 0.2, 0.8, 1.0, 1.0]
    with pytest.raises(UserError, match='--steps N or --epochs E'): P.fade_alpha(3, 10**12)
    with pytest.raises(UserError, match='Stage 2'): model_config('vae-gan', image_size=128)
    with pytest.raises(UserError, match='enc_stem > 0'): build_model('cvae-gan', model_config('cvae-gan', image_size=128, enc_stem=0))
    m = build_model('acvae-gan', model_config('acvae-gan', image_size=128))
    with pytest.raises(UserError, match='--size 128'): m.encode(torch.zeros(1, 3, 64, 64), torch.ones(1, m.n_attrs))
    with pytest.raises(UserError, match='must be in'): m.set_alpha(1.5)


def _stop_inside(monkeypatch, cls, at, seen=None):
    "Make the run stop inside step `at` (a KeyboardInterrupt from Python: that step is not saved); record alphas in `seen`."
    orig = cls.on_train_step
    def hook(self, step, total):
        if step == at: raise KeyboardInterrupt
        orig(self, step, total)
        if seen is not None: seen.append(self.alpha)
    monkeypatch.setattr(cls, 'on_train_step', hook)


def test_resume_mid_fade_in_is_bit_exact(tmp_path, faces_128, run64, monkeypatch):
    "A 20-step run stopped after its step-3 checkpoint (alpha = 0.3 next) and resumed matches an uninterrupted run at step 5."
    cls, kw = P.GrownChannelRecurrentModel, dict(KW, ckpt_every=1)
    with monkeypatch.context() as mp:
        _stop_inside(mp, cls, 6)
        with pytest.raises(KeyboardInterrupt): train('acvae-gan', tmp_path/'full', steps=20, faces=faces_128, init_from=run64, **kw)
    with monkeypatch.context() as mp:
        _stop_inside(mp, cls, 3)
        with pytest.raises(KeyboardInterrupt): train('acvae-gan', tmp_path/'half', steps=20, faces=faces_128, init_from=run64, **kw)
    ck3 = tmp_path/'half'/'checkpoints'/'step-0000003'
    assert read_weights(ck3/'model.safetensors')['decoder.alpha'].item() == pytest.approx(0.2)   # trained steps 0, 1, 2
    seen = []
    with monkeypatch.context() as mp:
        _stop_inside(mp, cls, 5, seen)
        with pytest.raises(KeyboardInterrupt): train('acvae-gan', tmp_path/'half', steps=20, faces=faces_128, resume=True, **kw)
    assert seen == pytest.approx([0.3, 0.4])                           # the resumed run continues the schedule at 0.3
    ck = lambda run: tmp_path/run/'checkpoints'/'step-0000005'
    full, half = read_weights(ck('full')/'model.safetensors'), read_weights(ck('half')/'model.safetensors')
    assert same(full, half) and full['D.trunk.alpha'].item() == pytest.approx(0.4)
    of, oh = read_state(ck('full')/'state.pt')['optimizers'], read_state(ck('half')/'state.pt')['optimizers']
    for k in ('gen', 'd_trunk'):                                        # the new blocks' Adam moments too
        assert all(torch.equal(a['exp_avg'], b['exp_avg']) for a, b in zip(of[k]['state'].values(), oh[k]['state'].values()))


@pytest.mark.parametrize('name', ['cvae-gan', 'ccrvae-gan'])
def test_other_models_train_at_128(tmp_path, faces_128, name):
    s = train(name, tmp_path/'r128', steps=2, faces=faces_128, **KW)    # (from scratch: the names are checked above)
    m = load(tmp_path/'r128')
    assert s['step'] == 2 and m.cfg.image_size == 128 and m.alpha == 1.0
    assert m.sample(faces_128.attrs[:2]).shape == (2, 3, 128, 128)


def test_minutes_only_is_refused(tmp_path, faces_128, run64):
    with pytest.raises(UserError, match='--steps N or --epochs E'):
        train('acvae-gan', tmp_path/'m', minutes=0.05, faces=faces_128, init_from=run64, **KW)


def test_cli_init_from_size_128(tmp_path, run_cli, faces_128, run64):
    code, out, err = run_cli('train', 'acvae-gan', '--init-from', run64, '--size', 128, '--n', 200, '--steps', 2,
                             '--set', 'batch_size=4', '--set', 'sample_every=0', '--out', tmp_path/'pg', '--no-progress')
    assert code == 0, err
    assert '46 new tensors, 0 resized, 0 unused' in out
    m = load(tmp_path/'pg')
    assert type(m).__name__ == 'GrownChannelRecurrentModel' and m.run['data']['size'] == 128
    assert (tmp_path/'pg'/'samples'/'step-0000002.png').exists()
    code, out, err = run_cli('train', 'acvae-gan', '--init-from', run64, '--size', 128, '--n', 200, '--minutes', 1,
                             '--out', tmp_path/'pg2', '--no-progress')
    assert code == 2 and '--steps N or --epochs E' in err
