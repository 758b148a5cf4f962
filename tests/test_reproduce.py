"Shipping (fp16 weights, cards), the shipped-classifier fallback, `crvae reproduce` (shipped and --train, resumable), the shipped checkpoints against their cards."
import json, os, shutil
from pathlib import Path

import pytest
import torch

import crvae
from crvae.core import UserError, load_json, save_json
from crvae.reproduce import reproduce, checkpoints_home
from crvae.shipping import (COMPARISON, cast_weights, eval_config, ship, ship_classifiers, shipped_name, evaluate_checkpoint)
from crvae.classifiers import eval_classifiers
from crvae.claims import CLAIMS, judge_claims, judge_claim
from crvae.report import md_to_html

TINY = eval_config('tiny')


pytestmark = pytest.mark.usefixtures('one_thread')


@pytest.fixture(scope='module')
def setup(faces_1k, tmp_path_factory, tiny_classifiers):
    "Tiny classifiers, two 2-step runs (vae-gan, acvae-gan) and their shipped copies in a temporary assets folder."
    from crvae.training import train
    root = tmp_path_factory.mktemp('reproduce')
    shutil.copytree(tiny_classifiers(faces_1k), root/'clf')
    kw = dict(faces=faces_1k, n=1000, steps=2, sets=['batch_size=8'], progress=False, sample_every=0, ckpt_every=0)
    train('vae-gan', root/'runs'/'vae-gan', **kw)
    train('acvae-gan', root/'runs'/'acvae-gan', **kw, snapshot_every=1, keep_snapshots=3)
    for role in ('vae-gan', 'acvae-gan'):
        ship(root/'runs'/role, shipped_name(role), root/'assets'/'checkpoints', cfg=TINY, faces=faces_1k, classifiers_root=root/'clf',
             snapshots=2 if role == 'acvae-gan' else 0)
    return root


def test_cast_weights_keeps_integers_and_refuses_overflow():
    w = cast_weights({'a': torch.randn(3), 'n': torch.tensor(5)})
    assert w['a'].dtype == torch.float16 and w['n'].dtype == torch.int64
    assert cast_weights({'a': torch.randn(3)}, 'float32')['a'].dtype == torch.float32
    with pytest.raises(UserError, match='--dtype float32'): cast_weights({'a': torch.tensor([1e9])})
    with pytest.raises(UserError, match='use one of'): cast_weights({}, 'int8')
    for bad in (float('nan'), float('inf')):            # broken in any precision: no advice to ship in float32
        with pytest.raises(UserError, match='NaN or infinite values before any cast') as e: cast_weights({'a': torch.tensor([bad])}, 'float32')
        assert '--dtype float32' not in str(e.value)


def test_commands_on_cards_name_their_folders():
    from crvae.shipping import portable_command
    assert portable_command("crvae train vae-gan --set 'w=[1, 2]' --out /home/me/runs/vae-gan-seed0 --init-from=/home/me/r/a") == \
        "crvae train vae-gan --set 'w=[1, 2]' --out vae-gan-seed0 --init-from=a"


def test_ship_writes_fp16_weights_card_and_loads_as_float32(setup):
    from crvae.runs import load, read_weights
    dest = setup/'assets'/'checkpoints'/'acvae-gan-avatars64'
    assert sorted(p.name for p in dest.iterdir()) == ['card.json', 'card.md', 'code_density.safetensors', 'model.safetensors', 'run.json',
                                                      'snapshots']
    w = read_weights(dest/'model.safetensors')
    assert {v.dtype for v in w.values() if v.is_floating_point()} == {torch.float16}
    assert any(k.startswith('D.') for k in w)                                  # the discriminator is kept (completion uses it)
    assert len(list((dest/'snapshots').glob('step-*.safetensors'))) == 2
    src, m = load(setup/'runs'/'acvae-gan'), load(dest)
    for (k, a), b in zip(src.state_dict().items(), m.state_dict().values()):
        assert b.dtype == a.dtype
        if a.is_floating_point(): torch.testing.assert_close(b, a, atol=2e-3 * max(1.0, a.abs().max().item()), rtol=1e-3)
    from crvae.fig_mi import decode_snapshots, snapshot_paths    # shipped snapshots hold only what decoding reads, in fp16
    snaps = snapshot_paths(m, 2)
    assert all(set(read_weights(p)) == set(m.decoder_keys()) for p in snaps)
    z, a = torch.randn(2, *m.latent_shape), torch.ones(2, m.n_attrs)
    x_run, x_ship = decode_snapshots(src, z, snapshot_paths(src, 2), a), decode_snapshots(m, z, snaps, a)
    assert x_ship.shape == (2, 2, 3, 64, 64) and (x_run - x_ship).abs().max() < 0.05
    info, card = load_json(dest/'run.json'), load_json(dest/'card.json')
    assert info['shipped']['dtype'] == 'float16' and info['shipped']['step'] == 2 and info['shipped']['source'].endswith('acvae-gan')
    assert card['command'].startswith('crvae train acvae-gan --data avatars --n 1000 --size 64 --config tiny --steps 2 --seed 0')
    assert card['data']['dataset'] == 'avatars' and card['data']['n'] == 1000 and card['data']['cache_hash']
    assert card['shipping_machine']['torch'] == torch.__version__ and card['evaluation']['n_test'] == TINY.n_test
    assert 0 <= card['metrics']['attribute_accuracy'] <= 1 and card['attention']['T'] == m.T
    assert '## Intended use' in (dest/'card.md').read_text() and 'real people' in card['limits']
    from crvae.prior_hole import load_code_density      # the face tool's density, fitted to these shipped weights
    dens = load_code_density(dest, m)
    assert dens.W.shape == (m.n_attrs, 512) and dens.info['n_faces'] == 812 and dens.info['model'] == 'acvae-gan'
    assert str(setup) not in json.dumps(dens.info)
    for f in ('card.json', 'card.md', 'run.json'): assert str(setup) not in (dest/f).read_text(), f'a machine path in {f}'
    # the bytes are canonical: writing the shipped tensors and metadata again gives the same bytes (and sha256)
    import hashlib
    from safetensors import safe_open
    from crvae.runs import safetensors_bytes
    blob = (dest/'model.safetensors').read_bytes()
    with safe_open(str(dest/'model.safetensors'), 'pt') as f: meta = f.metadata()
    assert set(meta) == {'model', 'step', 'dtype', 'source'} and hashlib.sha256(blob).hexdigest() == info['shipped']['sha256']
    assert all(safetensors_bytes(w, meta) == blob for _ in range(5))


def test_ship_errors(setup, run_cli, monkeypatch):
    monkeypatch.setenv('CRVAE_ASSETS', str(setup/'assets'))
    code, out, err = run_cli('ship', setup/'runs'/'vae-gan', '--name', 'vae-gan-avatars64', '--classifiers', setup/'clf', '--eval', 'tiny')
    assert code == 2 and 'already exists: pass --force' in err and len(err.strip().splitlines()) == 1
    code, out, err = run_cli('ship', setup/'runs'/'vae-gan', '--name', 'bad name', '--eval', 'tiny')
    assert code == 2 and '--name' in err
    code, out, err = run_cli('ship', setup/'runs'/'vae-gan', '--name', 'x', '--snapshots', '3', '--eval', 'tiny', '--classifiers', setup/'clf')
    assert code == 2 and 'has no snapshots' in err


def test_shipped_classifiers_are_the_fallback_for_the_same_data_only(setup, faces_1k, tmp_path, monkeypatch):
    from crvae.classifiers import load_classifiers
    dest = ship_classifiers(faces_1k, src=setup/'clf', out=tmp_path/'assets'/'classifiers'/'avatars64')
    card = load_json(dest/'attributes.json')
    assert card['shipped']['dtype'] == 'float16' and card['classifier_version'].endswith('-f16')
    assert card['shipped']['agreement_with_source']['attributes'] > 0.99
    monkeypatch.setenv('CRVAE_DATA', str(tmp_path/'empty-cache'))
    monkeypatch.setenv('CRVAE_ASSETS', str(tmp_path/'assets'))
    clf = load_classifiers(faces_1k)                                         # nothing in the cache: the shipped pair
    assert Path(clf.folder) == dest and next(clf.attributes.parameters()).dtype == torch.float32
    other = faces_1k.subset(torch.arange(10)); other.attr_names = other.attr_names[:-1]; other.attrs = other.attrs[:, :-1]
    with pytest.raises(UserError, match='no evaluation classifiers'): load_classifiers(other)
    with pytest.raises(UserError, match='no evaluation classifiers'): load_classifiers(faces_1k, root=tmp_path/'none')  # root: no fallback
    with pytest.raises(UserError, match='--force'): ship_classifiers(faces_1k, src=setup/'clf', out=dest)


def test_reproduce_shipped_report_resumes(setup, run_cli, monkeypatch):
    out = setup/'report'
    res = reproduce(out, roles=['vae-gan', 'acvae-gan'], assets=setup/'assets', classifiers_root=setup/'clf', cfg=TINY, progress=False)
    md, page = (out/'report.md').read_text(), (out/'report.html').read_text()
    for s in ('## Key results', '## Claims of the papers', 'Table 1', 'Table 2', 'Table 3', '## Responsible use', 'Wall time',
              '## The long comparison'):
        assert s in md and s.replace('## ', '') in page
    assert 'Not started' in md                          # these assets hold no protocol results
    assert '<img src="figures/acvae-fig7-progression.png"' in page and (out/'figures'/'acvae-fig7-progression.png').exists()
    verdicts = {r['claim']: r['verdict'] for r in res['claims']}
    assert verdicts['crVAE-GAN IS > VAE-GAN IS'] == 'not run' and len(verdicts) == len(CLAIMS)
    card = load_json(setup/'assets'/'checkpoints'/'acvae-gan-avatars64'/'card.json')
    got = res['by_role']['acvae-gan'][0]
    assert got['inception_score']['mean'] == pytest.approx(card['metrics']['inception_score'], rel=1e-6)
    stamp = (out/'results'/'acvae-gan-seed0.json').stat().st_mtime_ns
    again = reproduce(out, roles=['vae-gan', 'acvae-gan'], assets=setup/'assets', classifiers_root=setup/'clf', cfg=TINY, progress=False)
    assert (out/'results'/'acvae-gan-seed0.json').stat().st_mtime_ns == stamp                   # reused, not re-scored
    assert again['by_role']['acvae-gan'][0] == got
    monkeypatch.setenv('CRVAE_ASSETS', str(setup/'assets'))
    code, _, err = run_cli('reproduce', '--out', setup/'r2', '--eval', 'tiny')
    assert code == 2 and 'missing shipped checkpoints crvae-gan-avatars64' in err and 'crvae ship' in err and '--train' in err
    assert len(err.strip().splitlines()) == 1


def test_shipped_seed_scores_count_in_the_default_report(setup, faces_1k, tmp_path, run_cli):
    "`crvae ship-results` of a second vae-gan run: the report over the shipped checkpoints has two vae-gan seeds; a result "
    "scored with another evaluation config is left out, and the report says so."
    import shutil
    from crvae.reproduce import ship_results
    assets = Path(shutil.copytree(setup/'assets', tmp_path/'assets'))
    f = ship_results(setup/'runs'/'vae-gan', 'vae-gan', 1, assets/'results', cfg=TINY, faces=faces_1k, classifiers_root=setup/'clf')
    rec = load_json(f)
    assert f.name == 'vae-gan-seed1.json' and rec['result']['seed'] == 1 and rec['command'].startswith('crvae train vae-gan')
    assert str(setup) not in f.read_text()
    res = reproduce(tmp_path/'report', roles=['vae-gan', 'acvae-gan'], assets=assets, classifiers_root=setup/'clf', cfg=TINY, progress=False)
    row = {r['model']: r for r in res['summary']}['vae-gan']
    assert row['seeds'] == 2 and row['source'] == 'vae-gan-avatars64, vae-gan-seed1.json'
    md = (tmp_path/'report'/'report.md').read_text()
    assert 'vae-gan-seed1.json (scores only)' in md and 'Left out' not in md
    rec['key']['eval']['n_test'] += 1; save_json(f, rec)
    res = reproduce(tmp_path/'report', roles=['vae-gan', 'acvae-gan'], assets=assets, classifiers_root=setup/'clf', cfg=TINY, progress=False)
    assert {r['model']: r for r in res['summary']}['vae-gan']['seeds'] == 1
    assert 'Left out: vae-gan-seed1.json: scored with another evaluation config' in (tmp_path/'report'/'report.md').read_text()


def test_reproduce_train_equal_steps_never_retrains(setup, faces_1k, capsys):
    "Every model and seed trains for the same number of steps; finished runs are reused, interrupted ones resumed to that step."
    out = setup/'train'
    kw = dict(train=True, steps_per_model=3, seeds=2, n=1000, roles=['vae-gan'], classifiers_root=setup/'clf', cfg=TINY, progress=True)
    res = reproduce(out, **kw)
    err = capsys.readouterr().err
    assert '[1/5] train vae-gan seed 0 (3 steps)' in err and 'left' in err
    assert sorted(p.name for p in (out/'runs').iterdir()) == ['vae-gan-seed0', 'vae-gan-seed1']
    info = load_json(out/'runs'/'vae-gan-seed1'/'run.json')
    assert info['train_config']['steps'] == 3 and info['train_config']['seed'] == 1 and '--steps 3 --seed 1' in info['command']
    assert [load_json(out/'runs'/f'vae-gan-seed{s}'/'run.json')['last_step'] for s in (0, 1)] == [3, 3]
    row = {r['claim']: r for r in res['claims']}['acVAE-GAN attribute accuracy > cVAE-GAN']
    assert row['verdict'] == 'not run'
    assert res['summary'][0]['seeds'] == 2 and '±' in res['summary'][0]['IS'] and res['summary'][0]['steps'] == 3
    # an interrupted run (no last_step) resumes to the same step; finished ones are reused
    del info['last_step']; (out/'runs'/'vae-gan-seed1'/'run.json').write_text(json.dumps(info))
    reproduce(out, **kw)
    err = capsys.readouterr().err
    assert err.count('finished before: reused') == 1 and 'vae-gan seed 1: resumed at step 3' in err
    assert load_json(out/'runs'/'vae-gan-seed1'/'run.json')['last_step'] == 3
    with pytest.raises(UserError, match='more than --steps-per-model 2'): reproduce(out, **dict(kw, steps_per_model=2))
    assert 'mean ± std over 2 seeds' in (out/'report.md').read_text()


def test_claims_and_html_helpers():
    assert len({c['id'] for c in CLAIMS}) == len(CLAIMS)
    assert all(c['a'] in COMPARISON and c.get('b', 'vae-gan') in COMPARISON for c in CLAIMS)
    assert {r['verdict'] for r in judge_claims({})} == {'not run'}      # every claim is judged from numbers: none by eye
    assert {c['kind'] for c in CLAIMS} == {'is', 'acc', 'acc_vs_real', 'attention', 'stability', 'completion', 'recon'}
    nbs = Path(__file__).resolve().parents[1]/'nbs'
    assert all((nbs/f'{n}.ipynb').exists() for c in CLAIMS for n in c.get('explained', ())), 'a claim names a missing notebook'


def test_the_report_lists_the_verdicts_against_the_papers_with_their_notebooks():
    from crvae.report import differences
    rows = [dict(claim='A > B', verdict='not supported: the opposite holds, 2/3 seeds', explained=('91_differences',)),
            dict(claim='C > D', verdict='not reached, 1/1 seeds below 0.9'),
            dict(claim='E > F', verdict='supported, 3/3 seeds', explained=('11_fig_latent',)),
            dict(claim='G > H', verdict='too short to judge: spreads overlap')]
    text = '\n'.join(differences(rows))
    assert '- A > B: not supported: the opposite holds, 2/3 seeds. What we found and why: `nbs/91_differences.ipynb`.' in text
    assert '- C > D: not reached, 1/1 seeds below 0.9. Not yet explained in a notebook.' in text
    assert 'E > F' not in text and 'G > H' not in text
    assert differences(rows[2:]) == []                                  # nothing against the papers: no section


@pytest.mark.parametrize('with_mi,without_mi,verdict', [
    ([0.010, 0.012], [0.030, 0.020], 'supported: 2/2 seeds steadier, mean difference +0.0140 ± 0.0060 (s.e.)'),
    ([0.030, 0.020], [0.010, 0.012], 'not supported: the opposite holds in 2/2 seeds'),
    ([0.010, 0.030], [0.030, 0.010], 'not shown at this budget: 1/2 seeds steadier'),
    ([0.010, None], [0.030, 0.020], 'indicative (1 seed): ahead, +0.0200'),   # a seed without snapshots is left out; one seed: indicative
])
def test_the_stability_claim_is_judged_from_measured_change(with_mi, without_mi, verdict):
    stab = lambda v: None if v is None else dict(steps=[1, 2, 3], pixel_change_mean=v, pixel_change_se=0.001, part_switch_mean=0.1)
    by_role = {'crvae-gan': [dict(stability=stab(v)) for v in with_mi], 'crvae-gan-nomi': [dict(stability=stab(v)) for v in without_mi]}
    row = judge_claim(next(c for c in CLAIMS if c['id'] == 'mi-stable'), by_role)
    assert row['verdict'].startswith(verdict) and row['evidence'].startswith('crvae-gan vs crvae-gan-nomi: pixel change')
    none = judge_claim(next(c for c in CLAIMS if c['id'] == 'mi-stable'), {r: [dict(stability=None)] for r in by_role})
    assert none['verdict'] == 'not run' and 'snapshot_every' in none['evidence']


@pytest.mark.parametrize('conv_mse,vae_mse,verdict', [(0.010, 0.020, 'indicative (1 seed): ahead'), (0.030, 0.020, 'indicative (1 seed): behind'),
                                                       (0.0197, 0.020, 'indicative (1 seed): within the spreads')])
def test_the_reconstruction_claims_of_fig3_prefer_the_lower_error(conv_mse, vae_mse, verdict):
    "crVAE Fig. 3's top panel as a claim: the lower test MSE leads when the two standard errors do not overlap (one seed: indicative)."
    res = lambda mse, seed: dict(seed=seed, step=2500, reconstruction=dict(recon_mse=mse, recon_mse_se=0.0002))
    claim = next(c for c in CLAIMS if c['id'] == 'fig3-recon-conv')
    row = judge_claim(claim, {'conv-vae': [res(conv_mse, 0)], 'vae': [res(vae_mse, 0)]})
    assert row['verdict'].startswith(verdict) and row['evidence'].startswith(f'conv-vae vs vae: MSE {conv_mse:.4f} ± 0.0002')
    assert judge_claim(claim, {'conv-vae': [res(conv_mse, 0)], 'vae': [dict(res(vae_mse, 0), step=100)]})['verdict'].startswith('not judged')


@pytest.mark.parametrize('crvae_mse,verdict', [([0.10, 0.12, 0.20], 'supported, 3/3 masks'), ([0.30, 0.32, 0.40], 'not supported: the opposite'),
                                                ([0.10, 0.30, 0.25], 'too short to judge')])
def test_the_completion_claim_is_judged_from_the_masked_error(crvae_mse, verdict):
    rows = [dict(model=m, mask=k, masked_mse=v, masked_mse_se=0.01, attr_agreement=0.9) for m, vs in
            (('crvae-gan', crvae_mse), ('vae-gan', [0.20, 0.22, 0.25])) for k, v in zip(('eyes', 'mouth', 'right half'), vs)]
    claim = next(c for c in CLAIMS if c['id'] == 'completion')
    row = judge_claim(claim, {}, figures=dict(written={'crvae-fig8-completion': ['x.png']}, skipped={}, completion=dict(n_faces=8, rows=rows)))
    assert row['verdict'].startswith(verdict) and row['evidence'].startswith('crvae-gan vs vae-gan, 8 test faces per mask: eyes: masked MSE')
    assert judge_claim(claim, {}, figures=dict(written={}, skipped={'crvae-fig8-completion': 'no vae-gan'}))['verdict'] == 'not run'
    page = md_to_html('a <b> & c\n\n```\n<x>\n```')
    assert '<p>a &lt;b&gt; &amp; c</p>' in page and '<pre><code>&lt;x&gt;\n</code></pre>' in page


SHIPPED = checkpoints_home()          # crvae/assets/checkpoints, or $CRVAE_ASSETS/checkpoints
ROLES_SHIPPED = [r for r in COMPARISON if (SHIPPED/shipped_name(r)/'card.json').exists()]


@pytest.mark.skipif(not ROLES_SHIPPED, reason=f'no shipped checkpoints in {SHIPPED} yet (made with `crvae ship RUN --name NAME`)')
def test_shipped_checkpoints_match_their_cards(faces_1k):
    "Each shipped checkpoint, re-scored on its card's quick check (the 1,000-face set's first 64 test faces, seed 0), gives the "
    "card's numbers (CPU: deterministic up to float summation order across thread counts, hence rel 1e-3 on IS and FD, "
    "0.002 on accuracies). The card's full metrics (1,000 test faces of the 30,000) are `crvae reproduce`'s to recompute."
    import crvae
    from crvae.shipping import EvalConfig
    clf = eval_classifiers(faces_1k)
    for role in ROLES_SHIPPED:
        card = load_json(SHIPPED/shipped_name(role)/'card.json')
        chk = card['check']
        assert chk['data'] == dict(data='avatars', n=1000, size=64, seed=0), role
        assert clf.versions == chk['classifiers'], f"{role}: the card was scored with other classifiers"
        cfg = EvalConfig(**{k: v for k, v in chk['evaluation'].items() if k in EvalConfig.__dataclass_fields__})
        m = evaluate_checkpoint(crvae.load(shipped_name(role)), faces_1k, clf, cfg)     # found by name, as a user would
        want = chk['metrics']
        assert m['inception_score']['mean'] == pytest.approx(want['inception_score'], rel=1e-3), role
        assert m['frechet_distance']['value'] == pytest.approx(want['fd_crvae'], rel=1e-3), role
        if want['attribute_accuracy'] is not None:
            assert m['attribute_accuracy']['mean'] == pytest.approx(want['attribute_accuracy'], abs=2e-3), role


def test_the_completion_claim_reads_the_long_study_when_its_weights_ship(setup, tmp_path):
    "tools/completion_study.py's JSON counts for crVAE Table 2 only while the checkpoints it completed with still ship."
    from crvae.runs import sha256_file
    assets = tmp_path/'assets'
    shutil.copytree(setup/'assets', assets)
    w = sha256_file(assets/'checkpoints'/shipped_name('vae-gan')/'model.safetensors')
    rows = [dict(model=m, mask=k, masked_mse=v, masked_mse_se=0.001) for k in ('eyes', 'mouth')
            for m, v in (('vae-gan', 0.02), ('acvae-gan', 0.01))]
    claim = dict(id='completion', claim='acvae-gan completes better', kind='completion', a='acvae-gan', b='vae-gan',
                 figure='crvae-fig8-completion', paper='test')
    import crvae.reproduce as R
    old = R.judge_claims
    seen = {}
    R.judge_claims = lambda by_role, figures=None: seen.setdefault('c', judge_claim(claim, by_role, figures)) and []
    try:
        for sha, n in ((w, 100), ('0' * 64, None)):
            save_json(assets/'results'/'completion-study.json', dict(n_faces=100, steps=300, rows=rows,
                                                                     checkpoints={'vae-gan': dict(name='x', weights_sha256=sha)}))
            seen.clear()
            reproduce(tmp_path/f'r{n}', roles=['vae-gan', 'acvae-gan'], assets=assets, classifiers_root=setup/'clf', cfg=TINY,
                      progress=False)
            if n: assert seen['c']['evidence'].startswith('acvae-gan vs vae-gan, 100 test faces per mask') and \
                         seen['c']['verdict'] == 'supported, 2/2 masks'
            else: assert '100 test faces' not in seen['c']['evidence']          # weights changed: the study no longer counts
    finally: R.judge_claims = old


def test_reproduce_redraws_a_figure_deleted_or_cut_short(setup, tmp_path):
    out = tmp_path/'report'
    kw = dict(roles=['vae-gan', 'acvae-gan'], assets=setup/'assets', classifiers_root=setup/'clf', cfg=TINY, progress=False)
    reproduce(out, **kw)
    png = out/'figures'/'acvae-fig7-progression.png'
    whole = png.read_bytes()
    png.write_bytes(whole[:100])                                          # cut short
    reproduce(out, **kw)
    assert png.read_bytes()[:100] == whole[:100] and len(png.read_bytes()) > 100
    png.unlink()                                                          # deleted
    reproduce(out, **kw)
    assert png.is_file() and '<img src="figures/acvae-fig7-progression.png"' in (out/'report.html').read_text()
    stamp = png.stat().st_mtime_ns
    reproduce(out, **kw)
    assert png.stat().st_mtime_ns == stamp                                # intact: reused, not drawn again


def test_ship_rescores_its_row_of_the_samplers_file(setup, faces_1k, tmp_path, monkeypatch):
    "`ship` into the package replaces the model's row of assets/results/samplers.json (hashes recorded); other rows kept; the"
    " report flags rows whose checkpoint changed since they were scored; a ship elsewhere leaves the file alone."
    from crvae.shipping import SAMPLERS_FILE, stale_samplers, entry_hashes
    from crvae.prior_hole import refit
    from crvae.report import sampler_section
    assets = tmp_path/'assets'
    shutil.copytree(setup/'assets', assets)
    monkeypatch.setenv('CRVAE_ASSETS', str(assets))
    path = assets/SAMPLERS_FILE
    scores = dict(inception_score=1.0, fd=1.0, attribute_accuracy=None, diversity=0.1, broken=0.0)
    old = dict(role='vae-gan', checkpoint=shipped_name('vae-gan'), model='vae-gan', n=40, prior=scores, fitted=scores)
    save_json(path, dict(n=40, seed=0, rows=[old], command='python -c "..."'))
    name = shipped_name('acvae-gan')
    ship(setup/'runs'/'acvae-gan', name, cfg=TINY, faces=faces_1k, classifiers_root=setup/'clf', force=True)
    meta = load_json(path)
    assert [r['role'] for r in meta['rows']] == ['vae-gan', 'acvae-gan'] and meta['rows'][0] == old
    row = meta['rows'][1]
    assert row['checkpoint'] == name and row['n'] == 40 and set(row['prior']) == set(scores) and row['fitted']['attribute_accuracy'] is not None
    assert {k: row[k] for k in ('weights_sha256', 'density_sha256')} == entry_hashes(name)
    assert stale_samplers() == ['vae-gan']                                  # no hashes recorded: flagged
    assert any('Stale rows:** vae-gan were scored' in line for line in sampler_section())
    refit([name], n=50, progress=False)                                     # a new density, not rescored: its row goes stale
    assert stale_samplers() == ['vae-gan', 'acvae-gan']
    before = path.read_bytes()
    ship(setup/'runs'/'acvae-gan', name, tmp_path/'elsewhere', cfg=TINY, faces=faces_1k, classifiers_root=setup/'clf')
    assert path.read_bytes() == before                                      # shipped outside the package: the file untouched
