"Metrics on known cases, `evaluate_model` with stand-in generators, the papers' table layouts, the `crvae evaluate` command."
import json, math, shutil, sys, types

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from crvae.core import UserError
from crvae.bound import kl_diag_gaussians
from crvae.data import to_float
from crvae.classifiers import load_classifiers
from crvae.metrics import (BlurAutoencoder, NoiseModel, RealImagesModel, attribute_accuracy, chance_accuracy, evaluate_model,
                           frechet_distance, inception_score, precision_recall, reconstruction_metrics, result_row, sqrtm_psd,
                           trace_sqrt_product)
from crvae.tables import PAPER_ACVAE_TABLE3, acvae_table2, acvae_table3, crvae_table1


@pytest.fixture(scope='module')
def clf(faces_1k, tmp_path_factory, tiny_classifiers):
    "Tiny classifiers trained a little longer than the notebook's, so their accuracy is clearly above chance (a copy of the shared ones)."
    root = tmp_path_factory.mktemp('clf')/'root'
    shutil.copytree(tiny_classifiers(faces_1k), root)
    return load_classifiers(faces_1k, root=root)


# ---- inception score -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('k', [1, 2, 5, 40])
def test_is_of_even_one_hot_is_k(k):
    p = torch.eye(k).repeat(10 * 2, 1)
    r = inception_score(p)
    assert r['mean'] == pytest.approx(k, rel=1e-9) and r['std'] == pytest.approx(0, abs=1e-9) and r['n'] == 20 * k


def test_is_of_identical_predictions_is_1():
    p = torch.softmax(torch.randn(1, 9), 1).repeat(300, 1)
    assert inception_score(p, generator=torch.Generator().manual_seed(0))['mean'] == pytest.approx(1, abs=1e-9)


def test_is_heads_combine_geometrically():
    a, b = torch.eye(4).repeat(20, 1), torch.eye(9).repeat(10, 1)[:80]
    r = inception_score({'a': a, 'b': b})
    per = r['per_head']
    assert per['a']['mean'] == pytest.approx(4) and r['mean'] == pytest.approx(math.sqrt(per['a']['mean'] * per['b']['mean']), rel=1e-6)


@settings(max_examples=25, deadline=None)
@given(st.integers(10, 60), st.integers(2, 12), st.integers(0, 2**16))
def test_is_lies_between_1_and_k(n, k, seed):
    p = torch.softmax(3 * torch.randn(n, k, generator=torch.Generator().manual_seed(seed)), 1)
    r = inception_score(p)
    assert 1 - 1e-9 <= r['mean'] <= k + 1e-9 and r['std'] >= 0


def test_is_errors():
    with pytest.raises(UserError, match='apply softmax'): inception_score(torch.randn(50, 3))
    with pytest.raises(UserError, match='at least 10'): inception_score(torch.eye(3))
    with pytest.raises(UserError, match='same number'): inception_score({'a': torch.eye(10), 'b': torch.eye(20)})


# ---- Frechet distance ------------------------------------------------------------------------------------------------
def test_sqrtm_matches_scipy_including_singular():
    import scipy.linalg
    rng = np.random.default_rng(1)
    for rank in (12, 5):
        m = rng.normal(size=(12, rank)); a = m @ m.T
        assert np.allclose(sqrtm_psd(a) @ sqrtm_psd(a), a, atol=1e-8)
        b = rng.normal(size=(12, 12)); b = b @ b.T
        assert trace_sqrt_product(a, b) == pytest.approx(np.trace(scipy.linalg.sqrtm(a @ b)).real, rel=1e-6)


def test_fd_self_zero_shift_grows():
    rng = np.random.default_rng(0)
    f = rng.normal(size=(400, 16)) @ rng.normal(size=(16, 16))
    assert frechet_distance(f, f) == pytest.approx(0, abs=1e-6)
    assert frechet_distance(torch.tensor(f), torch.tensor(f)) == pytest.approx(0, abs=1e-6)
    ds = [frechet_distance(f, f + c) for c in (0.5, 1.0, 2.0)]
    assert ds == pytest.approx([0.25 * 16, 16, 64], rel=1e-6) and ds[0] < ds[1] < ds[2]
    g = rng.normal(size=(300, 16)) * 3
    assert frechet_distance(f, g) == pytest.approx(frechet_distance(g, f), rel=1e-6)
    with pytest.raises(UserError, match='feature sizes differ'): frechet_distance(f, f[:, :8])


def test_precision_recall_known_cases():
    a = torch.randn(500, 6)
    assert precision_recall(a, a) == dict(precision=1.0, recall=1.0, k=3)
    assert precision_recall(a, a + 50) == dict(precision=0.0, recall=0.0, k=3)
    wide = precision_recall(a, torch.randn(500, 6) * 4)  # diverse but unrealistic: low precision, high recall
    assert wide['precision'] < 0.5 and wide['recall'] > 0.9


# ---- attribute accuracy ------------------------------------------------------------------------------------------------
def test_true_vectors_score_the_classifier_and_shuffled_ones_chance(clf, faces_1k):
    test = faces_1k.subset('test')
    logits = clf.score(test.images)['attr_logits']
    true = attribute_accuracy(logits, test.attrs, test.attr_names)
    assert true['mean'] == pytest.approx(clf.cards['attributes']['accuracy']['test_mean'], abs=1e-4)
    shuffled = []
    for seed in range(5):
        perm = torch.randperm(len(test), generator=torch.Generator().manual_seed(seed))
        shuffled.append(attribute_accuracy(logits, test.attrs[perm])['mean'])
    chance = chance_accuracy(test.attrs, logits).mean().item()
    assert np.mean(shuffled) == pytest.approx(chance, abs=0.01)
    assert true['mean'] > np.mean(shuffled) + 0.02


def test_chance_level_formula():
    t = torch.tensor([[1., -1.], [1., -1.], [-1., -1.], [-1., 1.]])   # prevalences 0.5 and 0.25
    assert torch.allclose(chance_accuracy(t), torch.tensor([0.5, 0.625], dtype=torch.float64))
    assert torch.allclose(chance_accuracy(t, torch.ones(4, 2)), torch.tensor([0.5, 0.25], dtype=torch.float64))


# ---- reconstruction and ELBO ----------------------------------------------------------------------------------------
def test_kl_of_diagonal_gaussians_matches_torch():
    from torch.distributions import Independent, Normal, kl_divergence
    mu, lv, mp, lp = (torch.randn(3, 2, 4, 4) for _ in range(4))
    ref = kl_divergence(Independent(Normal(mu, (0.5 * lv).exp()), 3), Independent(Normal(mp, (0.5 * lp).exp()), 3))
    assert torch.allclose(kl_diag_gaussians(mu, lv, mp, lp, 'sum'), ref, atol=1e-4)


def test_reconstruction_metrics_by_hand(faces_1k):
    test = faces_1k.subset('test')
    m = BlurAutoencoder()
    r = reconstruction_metrics(m, test, batch_size=32)
    x = to_float(test.images)
    mu, lv = m.encode(x)
    assert r['recon_mse'] == pytest.approx(((m.decode(mu) - x) ** 2).mean().item(), rel=1e-5)
    per_image = ((m.decode(mu) - x) ** 2).flatten(1).mean(1)          # the standard error of the mean over the test images
    assert r['recon_mse_se'] == pytest.approx((per_image.std() / math.sqrt(len(x))).item(), rel=1e-4) and r['recon_mse_se'] > 0
    assert r['kl'] == pytest.approx(kl_diag_gaussians(mu, lv, reduction='sum').mean().item(), rel=1e-5)
    assert r['elbo'] == pytest.approx(r['log_likelihood'] - r['kl'], rel=1e-9)
    assert r['log_likelihood'] == pytest.approx(-0.5 * r['dims'] * (math.log(2 * math.pi * r['sigma'] ** 2) + 1), rel=1e-6)


# ---- evaluate_model ----------------------------------------------------------------------------------------------------
def test_evaluate_real_and_noise(clf, faces_1k):
    test = faces_1k.subset('test')
    real = evaluate_model(RealImagesModel(test), faces_1k, clf)
    assert real['attribute_accuracy']['mean'] == pytest.approx(clf.cards['attributes']['accuracy']['test_mean'], abs=1e-4)
    assert real['frechet_distance']['value'] == pytest.approx(0, abs=1e-5)
    assert real['inception_score']['mean'] == pytest.approx(real['reference']['inception_score']['mean'], rel=1e-6)
    assert real['n_generated'] == real['n_real'] == len(test) and real['classifier_versions'] == clf.versions
    assert 'not Inception-v3 FID' in real['frechet_distance']['feature_space']
    noise = evaluate_model(NoiseModel(faces_1k.n_attrs, conditional=True), faces_1k, clf, n_samples=150, seed=1)
    assert noise['n_generated'] == 150 and noise['frechet_distance']['value'] > 1
    assert noise['attribute_accuracy']['mean'] < real['attribute_accuracy']['mean']
    again = evaluate_model(NoiseModel(faces_1k.n_attrs, conditional=True), faces_1k, clf, n_samples=150, seed=1)
    assert again['inception_score'] == noise['inception_score']                    # seeded
    uncond = evaluate_model(RealImagesModel(test, conditional=False), faces_1k, clf, n_samples=2 * len(test))
    assert uncond['attribute_accuracy'] is None and uncond['frechet_distance']['value'] < 1e-3   # the test set twice
    blur = evaluate_model(BlurAutoencoder(), faces_1k, clf, n_samples=40)
    assert blur['reconstruction']['n'] == len(test) and blur['reconstruction']['recon_mse'] > 0
    row = result_row(blur)
    assert row['n_gen'] == 40 and row['classifiers'] == ' '.join(clf.versions.values()) and row['attr_acc_%'] is None


class _Broken(NoiseModel):
    def __init__(self, out): super().__init__(32, conditional=True, name='broken'); self.out = out
    def sample(self, a=None, n=None, generator=None): return self.out(len(a))


@pytest.mark.parametrize('model, msg', [
    (NoiseModel(5, conditional=True), 'conditioned on 5 attributes'),
    (_Broken(lambda b: torch.full((b, 3, 64, 64), float('nan'))), 'non-finite'),
    (_Broken(lambda b: torch.zeros(b, 64, 64)), 'expected'),
])
def test_evaluate_errors(clf, faces_1k, model, msg):
    with pytest.raises(UserError, match=msg): evaluate_model(model, faces_1k, clf, n_samples=20)


def test_evaluate_refuses_other_data(clf, faces_1k, tmp_path):
    from crvae.data import load_celeba, make_fake_celeba
    cel = load_celeba(make_fake_celeba(tmp_path/'c', n=30), size=64, out=tmp_path/'cc', workers=1, progress=False)
    with pytest.raises(UserError, match='crvae classifiers --data celeba'): evaluate_model(NoiseModel(3, conditional=True), cel, clf)


# ---- tables ------------------------------------------------------------------------------------------------------------
def test_paper_constants_and_layouts(clf, faces_1k):
    assert PAPER_ACVAE_TABLE3[64]['acVAE-GAN']['Average'] == 90.4 and PAPER_ACVAE_TABLE3[128]['Real Images']['Average'] == 90.9
    assert all(len(rows) == 4 for rows in PAPER_ACVAE_TABLE3.values())
    res = [dict(evaluate_model(RealImagesModel(faces_1k.subset('test')), faces_1k, clf), model='acvae-gan'),
           evaluate_model(BlurAutoencoder(), faces_1k, clf, n_samples=30)]
    t2 = {r['Model']: r for r in acvae_table2(res)}
    assert t2['acVAE-GAN']['64 CelebA (paper)'] == '55.12 ± 0.64' and t2['acVAE-GAN']['64 ours'].endswith(f"(n={res[0]['n_generated']})")
    t1 = {r['Model']: r for r in crvae_table1([dict(res[1], model='vae-gan')])}
    assert t1['VAE-GAN']['64 CelebA (paper)'] == '21.70 ± 0.15' and t1['VAE-GAN']['64 ours'].endswith('(n=30)')
    t3 = acvae_table3(res, 64)
    ours = [r for r in t3 if r['source'] == 'ours']
    assert [r['Model'] for r in ours] == ['Real Images', 'acVAE-GAN'] and ours[0]['Average'] == ours[1]['Average']
    assert next(r for r in t3 if r['Model'] == 'acVAE-GAN' and r['source'] != 'ours')['Eyeglasses'] == 99


# ---- the command -------------------------------------------------------------------------------------------------------
@pytest.fixture
def fake_training(monkeypatch, faces_1k):
    "A stand-in `crvae.runs` whose `load` returns the real-images generator of the 1,000-face set."
    mod = types.ModuleType('crvae.runs')
    def load(path, device='cpu'):
        m = RealImagesModel(faces_1k.subset('test'), name='stand-in')
        m.run = dict(name=str(path), data=dict(data='avatars', root=None, n=1000, size=64, seed=0, attr_names=faces_1k.attr_names))
        return m
    mod.load = load
    monkeypatch.setitem(sys.modules, 'crvae.runs', mod)


def test_cli_evaluate(run_cli, fake_training, clf, tmp_path):
    root = clf.folder.parent
    code, out, err = run_cli('evaluate', 'run-a', 'run-b', '--classifiers', root, '--out', tmp_path, '--quiet', '--n-samples', 50)
    assert code == 0, err
    for word in ('IS', 'attr_acc_%', 'FD_crvae', 'n_gen', 'inception score per recognition head', 'not Inception-v3 FID', clf.versions['attributes']):
        assert word in out
    data = json.loads((tmp_path/'evaluation.json').read_text())
    assert [r['run'] for r in data] == ['run-a', 'run-b'] and all(r['n_generated'] == 50 for r in data)
    assert (tmp_path/'evaluation.csv').read_text().count('\n') == 3
    code, out, err = run_cli('evaluate', 'run-a', '--classifiers', root, '--out', tmp_path, '--quiet', '--json', '--n-samples', 20)
    assert code == 0 and json.loads(out)[0]['n_generated'] == 20


def test_cli_evaluate_errors(run_cli, fake_training, tmp_path, monkeypatch):
    code, out, err = run_cli('evaluate', 'run-a', '--classifiers', tmp_path/'none', '--out', tmp_path, '--quiet')
    assert code == 2 and 'run `crvae classifiers --data avatars' in err
    code, out, err = run_cli('evaluate', 'run-a', '--n-samples', 0, '--quiet')
    assert code == 2 and '--n-samples' in err


# ---- exploded samples ------------------------------------------------------------------------------------------------
def test_exploded_rule_on_labelled_samples(faces_1k):
    "The rule flags exactly the 4 samples labelled exploded by eye among 64 (acvae-gan, previous release), no real face,"
    " all uniform noise and no blurred face."
    from pathlib import Path
    from PIL import Image
    from crvae.failures import exploded_share, exploded_threshold, total_variation
    png = Path(__file__).resolve().parents[1]/'nbs'/'images'/'metrics'/'acvae-gan-samples-seed3.png'
    grid = torch.from_numpy(np.array(Image.open(png)))
    faces = to_float(grid.reshape(8, 64, 8, 64, 3).permute(0, 2, 4, 1, 3).reshape(64, 3, 64, 64))
    for split in ('test', 'valid'):
        real = faces_1k.subset(split).images
        thr = exploded_threshold(real)
        assert {i for i, v in enumerate(total_variation(faces)) if v > thr} == {18, 27, 46, 61}
        assert exploded_share(total_variation(to_float(real)), thr)['share'] == 0.0
        assert exploded_share(total_variation(torch.rand(50, 3, 64, 64) * 2 - 1), thr)['share'] == 1.0
        blurred = torch.nn.functional.avg_pool2d(to_float(real), 4).repeat_interleave(4, 2).repeat_interleave(4, 3)
        assert exploded_share(total_variation(blurred), thr)['share'] == 0.0


def test_curve_point_keys(faces_1k, clf):
    from crvae.metrics import CURVE_KEYS, curve_point, validation_faces
    v = validation_faces(faces_1k, 40)
    assert len(v) == 40 and bool((v.split == 1).all())
    pt = curve_point(BlurAutoencoder(), v, clf)
    assert set(pt) == set(CURVE_KEYS) and pt['val_recon_mse'] > 0 and pt['attr_acc'] is None
    assert set(k for k, x in curve_point(BlurAutoencoder(), v, None).items() if x is not None) == {'val_recon_mse', 'val_elbo', 'val_kl'}


@pytest.mark.parametrize('text,shown', [('step,IS\n250,1.5\ntwo,1.6\n', None), ('IS\n1.5\n', None),
                                        ('step,IS,note\n250,1.5,ok\n500,1.61234,late\n', '| 500 | 1.612 | late |')])
def test_evaluate_curves_reads_a_damaged_file_as_a_user_error(text, shown, tiny_run, faces_1k, tmp_path, run_cli):
    run = tmp_path/'r'
    shutil.copytree(tiny_run('curves-vae', 'vae', [], faces_1k), run)
    (run/'curves.csv').write_text(text)
    code, out, err = run_cli('evaluate', run, '--curves')
    if shown is None:
        assert code == 2 and 'curves.csv' in err and len(err.strip().splitlines()) == 1 and 'Traceback' not in err
    else: assert code == 0 and shown in out                        # a text column is shown as it is


def test_labelled_faces_keep_their_own_pixels(tmp_path):
    "The broken-face labels come with the pixels they were given to, and a damaged or short sheet is a one-line error."
    import shutil
    from crvae.core import UserError, assets_home
    from crvae.failures import LABEL_SHEET, LABELS_FILE, broken_labels, labelled_faces
    rows = broken_labels()
    faces = labelled_faces(rows)
    assert faces.shape == (len(rows), 3, 64, 64) and faces.dtype == torch.uint8
    assert torch.equal(labelled_faces([rows[30], rows[3]]), faces[[30, 3]])         # each row's own face, in the rows' order
    blob = [i for i, r in enumerate(rows) if r['label'] == 'blob']
    clean = [i for i, r in enumerate(rows) if r['label'] == 'clean']
    # a blob is one coloured pattern: its faces are nearly alike, clean faces are not
    spread = lambda idx: faces[idx].float().std(0).mean().item()
    assert spread(blob[:6]) < spread(clean[:6])
    (tmp_path/'labels').mkdir()
    shutil.copy(assets_home()/LABELS_FILE, tmp_path/LABELS_FILE)
    with pytest.raises(UserError, match='is missing'): labelled_faces(rows, tmp_path/LABEL_SHEET)
    (tmp_path/LABEL_SHEET).write_bytes(b'not a png')
    with pytest.raises(UserError, match='not a readable PNG'): labelled_faces(rows, tmp_path/LABEL_SHEET)
    from PIL import Image
    Image.new('RGB', (24 * 64, 64)).save(tmp_path/LABEL_SHEET)                      # one row of 24 faces: too few
    with pytest.raises(UserError, match='do not match'): labelled_faces(rows, tmp_path/LABEL_SHEET)
