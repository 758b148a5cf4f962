"The 2-stage face tool: stage-2 variations touch only the fine-tuning block, undo, any click order, the stored block."
import json
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

import crvae.core
from crvae.core import UserError, main
from crvae.tool import (BLOCK_FILE, BlockSearch, FaceTool, FaceToolUI, fine_tuning_block, measure_blocks, resample_block,
                        choose_block, app_notebook, voila_command, APP_SOURCE)
from crvae.training import train, load

QUICK = dict(search=BlockSearch(n_faces=8), classifier=None)


pytestmark = pytest.mark.usefixtures('one_thread')


def _train(root, name, faces, steps=3):
    run = Path(root)/name
    train(name, run, steps=steps, faces=faces, sets=['batch_size=16'], progress=False, sample_every=0, ckpt_every=0)
    return run


@pytest.fixture(scope='module')
def acvae_run(tmp_path_factory, faces_1k):
    return _train(tmp_path_factory.mktemp('tool'), 'acvae-gan', faces_1k)


@pytest.fixture(scope='module')
def tool(acvae_run, faces_1k):
    fine_tuning_block(acvae_run, data=faces_1k, **QUICK)
    return FaceTool(acvae_run, n=4, **QUICK)


def _unchanged_blocks(tool):
    "Per block: is it identical, in every variation, to the face being varied?"
    zb, zv = tool.model.blocks(tool.state.base['z']), tool.model.blocks(tool.state.z)     # (1, T, D), (n, T, D)
    return (zv == zb).all(-1).all(0).tolist()


@pytest.mark.parametrize('block', [None, 0, 3, 7])
def test_variations_change_only_the_block(tool, block):
    tool.history.clear(); tool.set_block(block)
    tool.generate({'Eyeglasses': 1}, seed=3)
    tool.pick(1)
    tool.variations(n=5, seed=11)
    t = tool.block
    assert t == (tool.block_info['block'] if block is None else block)
    assert _unchanged_blocks(tool) == [b != t for b in range(tool.model.T)]
    assert not torch.equal(tool.state.z, tool.state.base['z'].expand_as(tool.state.z))    # the chosen block did change
    assert torch.equal(tool.state.a, tool.state.base['a'].expand(5, -1))
    assert tool.state.images.shape == (5, 3, 64, 64) and tool.state.images.dtype == torch.uint8
    tool.variations(n=3, seed=12)                                      # again: the same face is varied
    assert _unchanged_blocks(tool) == [b != t for b in range(tool.model.T)]
    tool.set_block(None)


def test_seeded_and_attributes_kept(tool):
    tool.history.clear()
    a = tool.generate('Eyeglasses,-Smiling', seed=5).clone()
    b = tool.generate({'Eyeglasses': True, 'Smiling': False}, seed=5)
    assert torch.equal(a, b)
    names = tool.attr_names
    assert (tool.state.a[:, names.index('Eyeglasses')] == 1).all() and (tool.state.a[:, names.index('Smiling')] == -1).all()
    assert not torch.equal(a, tool.generate({'Eyeglasses': 1}, seed=6))


def test_undo_walks_back(tool):
    tool.history.clear()
    g1 = tool.generate(None, seed=1).clone()
    tool.pick(2)
    v = tool.variations(seed=0).clone()
    tool.pick(0)
    assert [s.stage for s in tool.history] == ['faces', 'faces', 'variations', 'variations']
    assert tool.undo().picked is None and torch.equal(tool.state.images, v)
    assert tool.undo().picked == 2
    assert tool.undo().picked is None and torch.equal(tool.state.images, g1)
    assert tool.undo() is None
    with pytest.raises(UserError, match='nothing to undo'): tool.undo()


def test_messages_not_tracebacks(tool, acvae_run):
    fresh = FaceTool()
    for f, msg in [(fresh.generate, 'load a run first'), (fresh.variations, 'load a run first'), (fresh.undo, 'load a run first'),
                   (lambda: fresh.pick(0), 'load a run first'), (lambda: fresh.load(''), 'give a run folder'),
                   (lambda: fresh.load(acvae_run/'nope'), 'is not a crvae run')]:
        with pytest.raises(UserError, match=msg): f()
    tool.history.clear()
    with pytest.raises(UserError, match='generate faces first'): tool.pick(0)
    with pytest.raises(UserError, match='pick a face first'): tool.variations()
    tool.generate()
    with pytest.raises(UserError, match='pick a face first'): tool.variations()
    with pytest.raises(UserError, match='pick one of 0..3'): tool.pick(4)
    with pytest.raises(UserError, match='did you mean Eyeglasses'): tool.generate({'Eyeglases': 1})
    with pytest.raises(UserError, match='blocks 0..7'): tool.set_block(8)
    with pytest.raises(UserError, match='ask for 1 to 256'): tool.generate(n=0)


ACTIONS = st.lists(st.one_of(
    st.tuples(st.just('generate'), st.integers(0, 3)),
    st.tuples(st.just('pick'), st.integers(-1, 5)),
    st.tuples(st.just('variations'), st.integers(0, 3)),
    st.tuples(st.just('undo'), st.just(0)),
    st.tuples(st.just('block'), st.sampled_from([None, 0, 5, 9])),
    st.tuples(st.just('toggle'), st.sampled_from(['Eyeglasses', 'Smiling', 'Bald'])),
    st.tuples(st.just('load'), st.sampled_from(['good', 'bad'])),
), max_size=10)


@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(actions=ACTIONS)
def test_any_tool_sequence_raises_only_user_errors(tool, actions):
    "Random sequences of the tool's actions: only UserErrors, and every variations grid keeps the other blocks."
    tool.history.clear(); tool.set_block(None)
    for what, arg in actions:
        try:
            if what == 'generate': tool.generate({'Bald': 1} if arg % 2 else None, seed=arg)
            elif what == 'pick': tool.pick(arg)
            elif what == 'variations': tool.variations(seed=arg)
            elif what == 'undo': tool.undo()
            elif what == 'block': tool.set_block(arg)
        except UserError: pass
        s = tool.state
        if s is not None and s.stage == 'variations':
            assert _unchanged_blocks(tool) == [b != s.block for b in range(tool.model.T)]


@settings(max_examples=15, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(actions=ACTIONS, load_first=st.booleans())
def test_any_click_order_in_the_ui(tool, acvae_run, actions, load_first):
    "Random click sequences on the widgets, before or after loading: a message each time, never an exception."
    ui = FaceToolUI(FaceTool(n=4, **QUICK), run=str(acvae_run) if load_first else '', n=4)
    if load_first: ui.load_btn.click()
    for what, arg in actions:
        n0 = len(ui.messages)
        if what == 'generate': ui.seed.value = arg; ui.gen_btn.click()
        elif what == 'pick': ui.cells[arg % 4].children[1].click()
        elif what == 'variations': ui.var_btn.click()
        elif what == 'undo': ui.undo_btn.click()
        elif what == 'block': ui.block_box.value = -1 if arg is None else min(arg, 7) if ui.tool.loaded else -1
        elif what == 'toggle':
            if ui.tool.loaded: ui.attr_buttons[arg].click()
        elif what == 'load':
            ui.run_box.value = str(acvae_run) if arg == 'good' else str(acvae_run/'missing'); ui.load_btn.click()
        if what not in ('block', 'toggle'): assert len(ui.messages) == n0 + 1, (what, ui.messages[-3:])
    assert ui.errors == [], ui.errors
    assert not any(m.startswith('unexpected error') for _, m in ui.messages)


def test_block_file_written_atomically_and_reused(tmp_path, faces_1k, monkeypatch):
    run = _train(tmp_path, 'acvae-gan', faces_1k, steps=1)
    r1 = fine_tuning_block(run, data=faces_1k, **QUICK)
    stored = json.loads((run/BLOCK_FILE).read_text())
    assert r1['reused'] is False and stored['block'] == r1['block'] and len(stored['blocks']) == 8
    assert stored['key']['settings'] == dict(n_faces=8, seed=0, tol=0.02, min_visible=0.1) and stored['key']['classifier'] is None
    assert 'pixel change only' in stored['classifier_note'] and stored['prevalence']['Eyeglasses'] > 0
    assert fine_tuning_block(run, **QUICK)['reused'] is True                 # no data needed to reuse
    # a crash just before the rename leaves the old file whole and no temporary behind
    before = (run/BLOCK_FILE).read_bytes()
    def boom(tmp): raise OSError(28, 'No space left on device')
    monkeypatch.setattr(crvae.core, '_before_replace', boom)
    with pytest.raises(UserError): fine_tuning_block(run, data=faces_1k, recompute=True, **QUICK)
    monkeypatch.setattr(crvae.core, '_before_replace', None)
    assert (run/BLOCK_FILE).read_bytes() == before and not list(run.glob('.*.tmp'))
    # new settings or new weights measure again
    assert fine_tuning_block(run, data=faces_1k, search=BlockSearch(n_faces=4), classifier=None)['reused'] is False
    w = run/'model.safetensors'; w.write_bytes(w.read_bytes()[:-1] + bytes([w.read_bytes()[-1] ^ 1]))
    assert fine_tuning_block(run, data=faces_1k, **QUICK)['reused'] is False


def test_block_override_and_readonly_run(tmp_path, faces_1k, monkeypatch):
    run = _train(tmp_path, 'acvae-gan', faces_1k, steps=1)
    t = FaceTool(run, block=2, data=faces_1k, **QUICK)
    assert t.block == 2 and t.override == 2
    t.set_block(None); assert t.block == t.block_info['block']
    # a run folder that cannot be written: the result goes under data_home()/tool
    monkeypatch.setenv('CRVAE_DATA', str(tmp_path/'home'))
    real = crvae.tool.save_json
    def save(p, obj):
        if Path(p).parent == run: raise UserError(f'cannot write {p}: the folder is not writable')
        return real(p, obj)
    monkeypatch.setattr(crvae.tool, 'save_json', save)
    r = fine_tuning_block(run, data=faces_1k, search=BlockSearch(n_faces=4), classifier=None)
    assert Path(r['path']).parent == tmp_path/'home'/'tool'
    assert fine_tuning_block(run, search=BlockSearch(n_faces=4), classifier=None)['reused'] is True


@pytest.mark.parametrize('name', ['crvae-gan', 'vae'])
def test_unconditional_and_fc_models(tmp_path, faces_1k, name):
    "Unconditional models use N(0, I); FC models' T slices work but carry a warning."
    run = _train(tmp_path, name, faces_1k, steps=1)
    t = FaceTool(run, n=3, **QUICK)
    assert t.attr_names == [] and t.block_info['prevalence'] == {}
    assert ('arbitrary groups' in t.block_info['family_note']) == (name == 'vae')
    t.generate(); t.pick(0); t.variations()
    assert _unchanged_blocks(t) == [b != t.block for b in range(t.model.T)]
    with pytest.raises(UserError, match='unconditional'): t.generate({'Smiling': 1})


def test_measure_blocks_with_a_classifier(tool):
    "A classifier that reads the requested attributes back keeps every block; one that ignores them keeps none."
    m = tool.model
    rows = torch.where(torch.rand(8, 32, generator=torch.Generator().manual_seed(0)) < 0.5, 1.0, -1.0)
    perfect = measure_blocks(m, rows, classifier=lambda y: rows, search=BlockSearch(n_faces=8))
    assert perfect['base_score'] == 1.0 and all(r['keeps_attributes'] for r in perfect['blocks'])
    noisy = lambda y: y.mean((1, 2, 3), keepdim=False)[:, None].expand(-1, 32) - y.mean()   # depends on the picture
    res = measure_blocks(m, rows, classifier=noisy, search=BlockSearch(n_faces=8))
    assert res['block'] in range(8) and [r['block'] for r in res['blocks']] == list(range(8))
    assert 0 <= res['base_score'] <= 1 and all(0 <= r['attr_score'] <= 1 for r in res['blocks'])
    assert sorted(a for r in res['blocks'] for a in r['attends']) == sorted(m.run['data']['attr_names'])   # acVAE Table 1


def test_resample_block_keeps_the_rest(tool):
    m = tool.model
    a = torch.ones(3, 32); g = torch.Generator().manual_seed(0)
    z = m.sample_z(a, 3, g); z0 = z.clone()
    for t in range(m.T):
        z2 = resample_block(m, z, a, t, g)
        assert torch.equal(z, z0)                                               # the input is not modified
        assert (m.blocks(z2) != m.blocks(z)).any(-1).any(0).tolist() == [b == t for b in range(m.T)]


def test_choose_block_rules():
    rows = [dict(block=0, pixel_change=0.001, attr_score=0.9), dict(block=1, pixel_change=0.02, attr_score=0.9),
            dict(block=2, pixel_change=0.01, attr_score=0.5)]
    assert choose_block(rows, 0.08, 0.9, 0.02, 0.1) == (1, 'smallest visible change that keeps the attributes')
    assert choose_block(rows, 0.08, None, 0.02, 0.1)[0] == 2
    assert choose_block(rows, 1.0, 0.9, 0.02, 0.1)[0] == 0                       # nothing visible: smallest that keeps
    assert choose_block(rows, 0.08, 0.99, 0.02, 0.1)[0] == 0                     # nothing keeps: best score


def test_app_command_checks_and_loopback(acvae_run, run_cli, monkeypatch):
    code, out, err = run_cli('app', acvae_run/'nope', '--no-browser')
    assert code == 2 and 'is not a crvae run' in err
    code, out, err = run_cli('app', acvae_run, '--block', '9', '--no-browser')
    assert code == 2 and '--block 9' in err
    code, out, err = run_cli('app', acvae_run, '--port', '70000', '--no-browser')
    assert code == 2 and '--port' in err
    cmd = voila_command('x.ipynb', 1234)
    assert '--Voila.ip=127.0.0.1' in cmd and '--no-browser' in cmd and '--Voila.port_retries=0' in cmd
    nb = app_notebook()
    assert nb['cells'][0]['source'] == APP_SOURCE and nb['nbformat'] == 4
