"Figures: block-operation invariants, `crvae figures` on tiny runs (every figure, byte-identical with the same seed), errors."
import json, math
from pathlib import Path

import pytest
import torch
from PIL import Image

from crvae.core import UserError
from crvae.data import to_float
from crvae.figures import (FIGURES, RunSet, figure_config, figure_generator, load_figure_modules, make_figures,
                           untrained_runs, image_grid, png_bytes)
from crvae.block_effects import draw_z, resample_block
from crvae.fig_blocks import (interpolation_weights, interpolate_codes, progression_codes, progression, step_attributes,
                              decode_steps, interpolate_block, attention_of, attention_entropy, attention_table)
from crvae.completion import completion_mask, complete, masked_error, completion_study

# (run name, model, extra --set items); the crvae-gan pair keeps snapshots for crVAE Fig. 6
RUNS = [('vae', 'vae', []), ('conv-vae', 'conv-vae', []), ('crvae', 'crvae', []), ('vae-gan', 'vae-gan', []),
        ('vae-gan-mi', 'vae-gan', ['mi=true', 'kappa=0.02']), ('crvae-gan', 'crvae-gan', []),
        ('crvae-gan-nomi', 'crvae-gan', ['kappa=0']), ('cgan', 'cgan', []), ('cvae', 'cvae', []),
        ('cvae-gan', 'cvae-gan', []), ('ccrvae-gan', 'ccrvae-gan', []), ('acvae-gan', 'acvae-gan', [])]
EXPECTED = {'crvae-fig3-latent.png', 'crvae-fig4-samples.png', 'acvae-fig1-conditional.png', 'acvae-fig5-conditional.png',
            'crvae-fig5-mi-vaegan.png', 'crvae-fig6-snapshots.png', 'acvae-fig6-interpolation.png', 'acvae-fig7-progression.png',
            'acvae-table1-attention.md', 'acvae-table1-attention.png', 'crvae-fig9-progressive.png', 'crvae-fig10-block-interp.png',
            'crvae-fig11-block-styles.png', 'crvae-fig8-completion.png', 'crvae-fig8-completion-loss.png',
            'crvae-table2-completion.md', 'crvae-table2-completion.json', 'figures.json'}


pytestmark = pytest.mark.usefixtures('one_thread')


@pytest.fixture(scope='module')
def run_dirs(faces_1k, tiny_run):
    torch.manual_seed(0)
    return {name: tiny_run(name, model, sets, faces_1k, snapshots=name.startswith('crvae-gan')) for name, model, sets in RUNS}


@pytest.fixture(scope='module')
def models(faces_1k):
    return untrained_runs(['crvae-gan', 'cvae-gan', 'ccrvae-gan', 'acvae-gan', 'vae-gan'], faces_1k)


# -- invariants of the block operations ---------------------------------------------------------------------------

@torch.no_grad()
@pytest.mark.parametrize('role', ['acvae-gan', 'ccrvae-gan', 'cvae-gan'])
def test_interpolation_ends_are_the_decoded_samples(models, faces_1k, role):
    m, a = models.get(role), faces_1k.attrs[:1]
    z = draw_z(m, a.expand(2, -1), generator=figure_generator(0, 'ends', role))
    Z = interpolate_codes(z[:1], z[1:], 6)[:, 0]
    assert torch.equal(Z[0], z[0]) and torch.equal(Z[-1], z[1])
    x = m.decode(Z, a.expand(6, -1))
    torch.testing.assert_close(x[0], m.decode(z[:1], a)[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(x[-1], m.decode(z[1:], a)[0], atol=1e-5, rtol=0)
    w = interpolation_weights(6)
    psi = torch.linspace(0, math.pi / 2, 6)
    torch.testing.assert_close(w[1:-1], torch.cos(psi[1:-1]) ** 2)
    assert (w[1:] < w[:-1]).all()
    with pytest.raises(UserError, match='shapes'): interpolate_codes(z[:1], z, 3)


@torch.no_grad()
@pytest.mark.parametrize('role', ['acvae-gan', 'crvae-gan', 'ccrvae-gan'])
def test_progression_zeroes_the_blocks_after_t(models, faces_1k, role):
    m = models.get(role)
    a = faces_1k.attrs[:3] if m.conditional else None
    z = draw_z(m, a, 3, figure_generator(0, 'prog', role))
    y = step_attributes(m, a, 3)
    Z, Y = progression_codes(m, z, y)
    zb = m.blocks(z)
    assert len(Z) == m.T + 1
    for t in range(m.T + 1):
        bt = m.blocks(Z[t])
        assert torch.count_nonzero(bt[:, t:]) == 0 and torch.equal(bt[:, :t], zb[:, :t])
        if Y is not None: assert torch.count_nonzero(Y[t][:, t:]) == 0 and torch.equal(Y[t][:, :t], y[:, :t])
    assert Y is None or torch.equal(Y[-1], y)
    x = progression(m, z, a)
    assert x.shape == (3, m.T + 1, 3, 64, 64)
    torch.testing.assert_close(x[:, -1], m.decode(z, a), atol=1e-5, rtol=0)
    torch.testing.assert_close(decode_steps(m, Z[2], None if Y is None else Y[2]), x[:, 2], atol=1e-6, rtol=0)


@torch.no_grad()
@pytest.mark.parametrize('role', ['acvae-gan', 'crvae-gan'])
def test_resampling_block_k_leaves_the_other_blocks_unchanged(models, faces_1k, role):
    m = models.get(role)
    a = faces_1k.attrs[:2] if m.conditional else None
    z = draw_z(m, a, 2, figure_generator(0, 'res', role))
    zb = m.blocks(z)
    for t in range(1, m.T + 1):
        Zs = resample_block(m, z, t, 3, figure_generator(0, 'res', role, t), a)
        assert Zs.shape == (3, *z.shape)
        for j in range(3):
            nb = m.blocks(Zs[j])
            others = [i for i in range(m.T) if i != t - 1]
            assert torch.equal(nb[:, others], zb[:, others])
            assert not torch.equal(nb[:, t - 1], zb[:, t - 1])
        # the new block is block t of the prior, drawn with the generator's noise
        mu, logvar = m.prior(a, 2)
        eps = torch.randn(3, 2, zb.shape[-1], generator=figure_generator(0, 'res', role, t))
        expect = m.blocks(mu)[:, t - 1] + (0.5 * m.blocks(logvar)[:, t - 1]).exp() * eps
        torch.testing.assert_close(m.blocks(Zs.reshape(-1, *z.shape[1:])).reshape(3, 2, m.T, -1)[:, :, t - 1], expect)
    with pytest.raises(UserError, match='out of range'): resample_block(m, z, 0, 1)


@torch.no_grad()
def test_block_interpolation_moves_only_block_t(models):
    m = models.get('crvae-gan')
    z = draw_z(m, n=3, generator=figure_generator(0, 'bi'))
    target = torch.randn(m.blocks(z).shape[-1], generator=figure_generator(1, 'bi'))
    Z = interpolate_block(m, z, target, 4, 5)
    assert torch.equal(Z[0], z)
    b = m.blocks(Z.reshape(-1, *z.shape[1:])).reshape(5, 3, m.T, -1)
    assert torch.equal(b[-1][:, 3], target.expand(3, -1))
    assert torch.equal(b[:, :, [0, 1, 2, 4, 5, 6, 7]], m.blocks(z)[:, [0, 1, 2, 4, 5, 6, 7]].expand(5, -1, -1, -1))


def test_attention_table_and_entropy(models, faces_1k):
    M = attention_of(models.get('acvae-gan'))
    assert M.shape == (8, faces_1k.n_attrs)
    torch.testing.assert_close(M.sum(0), torch.ones(M.shape[1]))
    torch.testing.assert_close(attention_entropy(M), torch.distributions.Categorical(probs=M.T).entropy())
    tab = attention_table(M, faces_1k.attr_names)
    assert sum(r['count'] for r in tab) == faces_1k.n_attrs and [r['step'] for r in tab] == list(range(1, 9))
    one_hot = torch.eye(8)[:, [0, 0, 3]]
    assert attention_table(one_hot, ['a', 'b', 'c'])[0]['attributes'] == 'a, b'
    assert torch.allclose(attention_entropy(one_hot), torch.zeros(3))
    with pytest.raises(UserError, match='no attention'): attention_of(models.get('crvae-gan'))


# -- completion ---------------------------------------------------------------------------------------------------

def test_completion_keeps_visible_pixels_and_scores(models, faces_1k):
    m = models.get('crvae-gan')
    x = to_float(faces_1k.images[:2])
    mask = completion_mask('mouth')
    torch.manual_seed(0)
    res = complete(m, x, mask, steps=3, generator=figure_generator(0, 'c'))
    assert torch.equal(res['x_fill'] * mask, x * mask)
    assert res['trace']['loss'].shape == (4, 2)
    assert torch.equal(masked_error(x, x, mask), torch.zeros(2))
    assert (masked_error(res['x_fill'], x, mask) > 0).all()
    assert all(p.grad is None for p in m.parameters())
    st = completion_study({'crvae-gan': m}, x, faces_1k.attrs[:2], masks=('eyes', 'right-half'), steps=1,
                          realism=lambda im, at: dict(mean=im.mean((1, 2, 3))))
    assert [(r['model'], r['mask']) for r in st['rows']] == [('real faces', '-'), ('crvae-gan', 'eyes'), ('crvae-gan', 'right-half')]
    assert set(st['rows'][1]) == {'model', 'mask', 'masked_mse', 'masked_mse_se', 'mean'}
    with pytest.raises(UserError, match='eyes, mouth, right-half'): completion_mask('nose')


# -- the command --------------------------------------------------------------------------------------------------

def test_figures_cli_writes_every_figure_and_repeats_bytes(run_dirs, tmp_path, run_cli):
    code, out, err = run_cli('figures', *run_dirs.values(), '--out', tmp_path/'a', '--config', 'tiny', '--seed', '3')
    assert code == 0, err
    names = {p.name for p in (tmp_path/'a').iterdir()}
    assert names == EXPECTED, names ^ EXPECTED
    info = json.loads((tmp_path/'a'/'figures.json').read_text())
    assert set(info['figures']) == set(load_figure_modules()) and info['skipped'] == {}
    assert {r['role'] for r in info['runs']} == set(run_dirs)
    for p in (tmp_path/'a').glob('*.png'):
        with Image.open(p) as im: assert im.size[0] > 64 and im.size[1] > 64
    assert 'Each attribute n attends step' in (tmp_path/'a'/'acvae-table1-attention.md').read_text()
    # the same runs and seed give the same bytes, also when only some figures are made
    runs = RunSet.load(list(run_dirs.values()))
    again = ['crvae-fig4-samples', 'acvae-fig7-progression', 'crvae-fig6-snapshots', 'crvae-fig8-completion']
    make_figures(runs, tmp_path/'b', only=again, seed=3, cfg=figure_config('tiny'), verbose=False)
    for p in (tmp_path/'b').iterdir():
        if p.name != 'figures.json': assert p.read_bytes() == (tmp_path/'a'/p.name).read_bytes(), p.name
    make_figures(runs, tmp_path/'c', only='crvae-fig4-samples', seed=4, cfg=figure_config('tiny'), verbose=False)
    assert (tmp_path/'c'/'crvae-fig4-samples.png').read_bytes() != (tmp_path/'a'/'crvae-fig4-samples.png').read_bytes()


def test_figures_cli_errors(run_dirs, tmp_path, run_cli, monkeypatch):
    code, out, err = run_cli('figures', '--list')
    assert code == 0 and all(n in out for n in FIGURES)
    code, _, err = run_cli('figures', run_dirs['vae'], '--out', tmp_path, '--only', 'crvae-fig3-latnet')
    assert code == 2 and 'did you mean crvae-fig3-latent' in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli('figures', run_dirs['vae'], '--out', tmp_path, '--only', 'crvae-fig4-samples')
    assert code == 2 and 'needs a run of vae-gan / crvae-gan' in err
    code, _, err = run_cli('figures', run_dirs['vae-gan-mi'], '--out', tmp_path)
    assert code == 2 and 'no figure could be made' in err
    code, _, err = run_cli('figures', run_dirs['vae'], run_dirs['vae'], '--out', tmp_path)
    assert code == 2 and 'one run per model' in err
    monkeypatch.setenv('CRVAE_ASSETS', str(tmp_path/'no-assets'))      # no run given, none shipped
    code, _, err = run_cli('figures', '--out', tmp_path)
    assert code == 2 and 'at least one run folder' in err
    monkeypatch.delenv('CRVAE_ASSETS')
    code, _, err = run_cli('figures', run_dirs['vae'])
    assert code == 2 and '--out DIR is required' in err
    code, _, err = run_cli('figures', tmp_path/'nope', '--out', tmp_path)
    assert code == 2 and 'not a crvae run' in err
    code, _, err = run_cli('figures', run_dirs['vae'], '--out', tmp_path, '--set', 'interp_steps=1')
    assert code == 2 and 'two ends' in err


def test_fig6_needs_snapshots(run_dirs, tmp_path, run_cli, faces_1k):
    import shutil
    bare = tmp_path/'bare'
    shutil.copytree(run_dirs['crvae-gan'], bare)
    shutil.rmtree(bare/'snapshots')
    code, _, err = run_cli('figures', bare, '--out', tmp_path/'o', '--only', 'crvae-fig6-snapshots')
    assert code == 2 and 'snapshot_every' in err
    code, _, err = run_cli('figures', bare, '--out', tmp_path/'o', '--config', 'tiny')   # other figures still come
    assert code == 0 and 'crvae-fig6-snapshots' in err and (tmp_path/'o'/'crvae-fig9-progressive.png').exists()


def test_grid_png_is_deterministic_and_labelled(faces_1k):
    g1 = image_grid(faces_1k.images[:4].reshape(2, 2, 3, 64, 64), row_labels=['a', 'b'], col_labels=['c', 'd'], title='t')
    g2 = image_grid(to_float(faces_1k.images[:4]).reshape(2, 2, 3, 64, 64), row_labels=['a', 'b'], col_labels=['c', 'd'], title='t')
    assert png_bytes(g1) == png_bytes(g2)
    with pytest.raises(UserError, match='row labels'): image_grid(faces_1k.images[:4].reshape(2, 2, 3, 64, 64), row_labels=['a'])


def test_block_effects_table(models, faces_1k):
    "The T x families block table: shares in [0, 1], one row per block; a model whose decoder ignores z scores 0 everywhere."
    from crvae.classifiers import load_classifiers
    from crvae.block_effects import block_effect_rows, block_effects, blocks_with_effect
    clf = load_classifiers(faces_1k)
    m = models.get('crvae-gan')
    e = block_effects(m, clf, n=16)
    assert e['share'].shape == (m.T, len(e['families'])) and 0 <= e['share'].min() and e['share'].max() <= 1
    assert [r['block'] for r in block_effect_rows(e)] == list(range(1, m.T + 1))
    import copy
    dead = copy.deepcopy(m)
    with torch.no_grad():
        for p in dead.gen_path.rnn.proj.parameters(): p.zero_()              # u = 0 whatever z is
    assert blocks_with_effect(block_effects(dead, clf, n=16), share=0.01) == 0


def test_snapshot_stability_measures_the_change_between_snapshots(run_dirs, faces_1k, tiny_classifiers, tmp_path):
    "crVAE Fig. 6 as numbers: pixel change and part switches per consecutive snapshot pair; all zero for identical snapshots."
    import shutil
    from crvae.classifiers import load_classifiers
    from crvae.fig_mi import snapshot_stability
    from crvae.runs import load
    clf = load_classifiers(faces_1k, root=tiny_classifiers(faces_1k))
    s = snapshot_stability(load(run_dirs['crvae-gan']), clf, k=3, n=8)
    assert len(s['steps']) >= 2 and len(s['pixel_change']) == len(s['part_switch']) == len(s['steps']) - 1
    assert 0 < s['pixel_change_mean'] <= 1 and 0 <= s['part_switch_mean'] <= 1
    same = Path(shutil.copytree(run_dirs['crvae-gan'], tmp_path/'same'))
    first, *rest = sorted((same/'snapshots').glob('*.safetensors'))
    for p in rest: shutil.copy(first, p)
    s = snapshot_stability(load(same), clf, k=3, n=8)
    assert s['pixel_change_mean'] == 0 and s['part_switch_mean'] == 0
    assert snapshot_stability(load(run_dirs['vae-gan']), clf) is None and snapshot_stability(load(run_dirs['acvae-gan']), clf) is None
