"Stage 2 (crVAE 4.3): the networks, the perceptual loss, training/loading/resume, scoring at 128 px, the commands."

import json, shutil

import pytest
import torch
import torch.nn.functional as F

import crvae.stage2 as S
from crvae.classifiers import RecognitionClassifier, RecognitionClassifierConfig
from crvae.core import UserError
from crvae.training import train
from crvae.runs import read_weights

KW = dict(progress=False, log_every=1, sample_every=0)


@pytest.fixture(scope='module')
def faces_128():
    from crvae.data import load_avatars
    return load_avatars(n=200, size=128, progress=False)


@pytest.fixture(scope='module')
def stage1(faces_1k, tmp_path_factory):
    "64 px tiny stage-1 runs of 1 step: {model name: run folder}."
    root = tmp_path_factory.mktemp('s1')
    runs = {}
    for name in ('crvae-gan', 'vae-gan', 'acvae-gan'):
        train(name, root/name, steps=1, faces=faces_1k, sets=['batch_size=4'], **KW)
        runs[name] = root/name
    return runs


@pytest.fixture(scope='module')
def recognition():
    torch.manual_seed(0)
    return RecognitionClassifier({'who': 5}, RecognitionClassifierConfig.preset('tiny')).eval()


def test_networks():
    torch.manual_seed(0)
    cfg = S.stage2_config('tiny')
    G, D = S.Stage2Generator(cfg), S.Stage2Discriminator(cfg)
    x = torch.rand(3, 3, 64, 64) * 2 - 1
    y = G(x)
    assert y.shape == (3, 3, 128, 128) and D(y).shape == (3,)
    assert (y - F.interpolate(x, scale_factor=2, mode='bilinear')).abs().max() <= 1e-3    # starts as upsampling
    y2 = S.Stage2Generator(S.stage2_config('tiny', skip=False))(x)
    assert y2.shape == (3, 3, 128, 128) and y2.abs().max() < 1
    with pytest.raises(UserError, match='did you mean perceptual'): S.stage2_config(sets=['perceptul=1'])
    with pytest.raises(UserError, match='even number'): S.stage2_config(g_channels=3)


def test_perceptual_loss(recognition):
    p = S.PerceptualLoss(recognition, (1, 3))
    x = torch.rand(2, 3, 128, 128) * 2 - 1
    assert p(x, x).item() == 0.0
    xh = (x + 0.2 * torch.randn_like(x)).requires_grad_()
    l = p(xh, x); l.backward()
    assert l.item() > 0 and xh.grad.abs().sum() > 0
    assert all(q.grad is None for q in recognition.parameters())           # the classifier is never trained
    p.train(); assert not p.net.training                                    # and stays in evaluation mode
    a, b = p(xh.detach() * 0.5, x).item(), p(xh.detach(), x).item()
    assert a != b


@pytest.mark.parametrize('name', ['crvae-gan', pytest.param('vae-gan', marks=pytest.mark.slow)])   # vae-gan: 13 s, --runslow; the same Stage2Trainer
def test_train_resume_is_bit_exact_and_loads(tmp_path, stage1, faces_128, recognition, name):
    kw = dict(KW, faces=faces_128, recognition=recognition, perceptual=True, sets=['batch_size=4'], ckpt_every=2)
    S.train_stage2(stage1[name], tmp_path/'full', steps=4, **kw)
    S.train_stage2(stage1[name], tmp_path/'half', steps=2, **kw)
    S.train_stage2(None, tmp_path/'half', steps=4, resume=True, **kw)
    a, b = read_weights(tmp_path/'full'/'model.safetensors'), read_weights(tmp_path/'half'/'model.safetensors')
    assert sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) for k in a)
    rows = (tmp_path/'half'/'log.csv').read_text().splitlines()
    assert [int(r.split(',')[0]) for r in rows[1:]] == [1, 2, 3, 4] and 'perceptual' in rows[0]
    pipe = S.load_stage2(tmp_path/'full')
    label = {'crvae-gan': 'crVAE-GAN + Perc.', 'vae-gan': 'VAE-GAN + Perc.'}[name]
    assert pipe.label == label and pipe.run['data']['size'] == 128 and pipe.run['data']['n'] == 200
    g = torch.Generator().manual_seed(0)
    assert pipe.sample(n=3, generator=g).shape == (3, 3, 128, 128)
    x = torch.rand(2, 3, 128, 128) * 2 - 1
    mu, logvar = pipe.encode(x)
    assert pipe.decode(mu).shape == (2, 3, 128, 128)
    assert (tmp_path/'full'/'stage1'/'model.safetensors').exists()


def test_conditional_stage1_and_errors(tmp_path, stage1, faces_128, faces_1k):
    s = S.train_stage2(stage1['acvae-gan'], tmp_path/'ac', steps=1, faces=faces_128, sets=['batch_size=4'], **KW)
    pipe = S.load_stage2(tmp_path/'ac')
    assert s['step'] == 1 and pipe.conditional and pipe.sample(faces_128.attrs[:2]).shape == (2, 3, 128, 128)
    with pytest.raises(UserError, match='already holds a run'):
        S.train_stage2(stage1['acvae-gan'], tmp_path/'ac', steps=1, faces=faces_128, **KW)
    with pytest.raises(UserError, match='would change it'):
        S.train_stage2(None, tmp_path/'ac', steps=2, resume=True, faces=faces_128, sets=['lr=1e-3'], **KW)
    with pytest.raises(UserError, match='128 px'):
        S.train_stage2(stage1['crvae-gan'], tmp_path/'x', steps=1, faces=faces_1k, **KW)
    with pytest.raises(UserError, match='not a Stage 2 run'): S.load_stage2(stage1['crvae-gan'])
    train('cgan', tmp_path/'cgan', steps=1, faces=faces_1k, sets=['batch_size=4'], **KW)
    with pytest.raises(UserError, match='has no encoder'):
        S.train_stage2(tmp_path/'cgan', tmp_path/'y', steps=1, faces=faces_128, perceptual=True,
                       recognition=RecognitionClassifier({'a': 2}, RecognitionClassifierConfig.preset('tiny')), **KW)


def test_commands(tmp_path, run_cli, stage1, faces_1k, faces_128, tiny_classifiers):
    from crvae.classifiers import load_classifiers
    shutil.copytree(tiny_classifiers(faces_1k), tmp_path/'clf')
    clf = load_classifiers(faces_1k, root=tmp_path/'clf')
    code, out, err = run_cli('stage2', stage1['crvae-gan'], '--out', tmp_path/'s2', '--perceptual', '--classifiers', clf.folder,
                             '--steps', 2, '--n', 200, '--set', 'batch_size=4', '--set', 'sample_every=1', '--no-progress')
    assert code == 0, err
    info = json.loads((tmp_path/'s2'/'run.json').read_text())
    assert info['kind'] == 'stage2' and info['perceptual']['version'] == clf.versions['recognition'] and info['last_step'] == 2
    assert (tmp_path/'s2'/'samples'/'step-0000001.png').exists()
    code, out, err = run_cli('stage2-evaluate', tmp_path/'s2', stage1['crvae-gan'], '--classifiers', clf.folder,
                             '--n-samples', 20, '--out', tmp_path/'ev', '--quiet')
    assert code == 0, err
    assert 'crVAE-GAN + Perc.' in out and 'crVAE Table 1 layout' in out
    res = json.loads((tmp_path/'ev'/'evaluation.json').read_text())
    assert [r['image_size'] for r in res] == [128, 64] and res[0]['reconstruction']['dims'] == 3 * 128 * 128
    code, out, err = run_cli('stage2', '--out', tmp_path/'s3', '--steps', 1)
    assert code == 2 and 'crvae stage2 RUN_64 --out DIR' in err
    code, out, err = run_cli('stage2', stage1['crvae-gan'], '--out', tmp_path/'s4', '--minutes', 1, '--steps', 1)
    assert code == 2 and 'not allowed with argument' in err
