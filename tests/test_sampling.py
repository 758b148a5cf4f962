"Sampling and editing: the attribute parser, unnamed attributes, `crvae sample`, `crvae edit`, `crvae reconstruct`, image loading."
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings, strategies as st
from PIL import Image

from crvae.core import UserError
from crvae.sampling import (parse_attrs, sample_attributes, attribute_prevalence, sample_faces, load_face_image, edit_face,
                            reconstruct_face, estimate_source_attributes)
from crvae.runs import load

NAMES = ['Smiling', 'Eyeglasses', 'Wearing_Hat', 'Bald', 'Mouth_Slightly_Open']


pytestmark = pytest.mark.usefixtures('one_thread')


@pytest.fixture(scope='module')
def runs(faces_1k, tiny_run):
    torch.manual_seed(0)
    return {n: tiny_run(n, n, [], faces_1k) for n in ('acvae-gan', 'vae', 'cgan')}


@pytest.fixture(scope='module')
def face_file(faces_1k, tmp_path_factory):
    "A test face enlarged and padded into a 220 x 160 JPEG (not square, not 64 px)."
    p = tmp_path_factory.mktemp('img')/'face.jpg'
    big = Image.fromarray(faces_1k.subset('test').images[0].permute(1, 2, 0).numpy()).resize((160, 160), Image.LANCZOS)
    im = Image.new('RGB', (220, 160), 'white'); im.paste(big, (30, 0)); im.save(p)
    return p


# -- the parser ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('text,expect', [
    ('Smiling,Eyeglasses,-Wearing_Hat', {'Smiling': 1, 'Eyeglasses': 1, 'Wearing_Hat': -1}),
    ('Smiling=1 Bald=0', {'Smiling': 1, 'Bald': -1}),
    ('smiling=TRUE,bald=false', {'Smiling': 1, 'Bald': -1}),
    ('+Bald, Smiling=-1 ,Eyeglasses=+1', {'Bald': 1, 'Smiling': -1, 'Eyeglasses': 1}),
    ('Smiling,Smiling=1', {'Smiling': 1}),
    ('', {}), (' , ', {}),
])
def test_parse_attrs_accepts(text, expect):
    assert parse_attrs(text, NAMES) == {k: float(v) for k, v in expect.items()}


@pytest.mark.parametrize('text,msg', [
    ('Smilng', 'did you mean Smiling?'), ('eyeglases', 'did you mean Eyeglasses?'), ('Nose', 'valid attributes: Smiling, Eyeglasses'),
    ('Smiling=2', 'must be 1, +1, true'), ('Smiling=yes', 'must be 1, +1, true'), ('Smiling=', 'must be 1, +1, true'),
    ('Smiling,-Smiling', 'given twice'), ('-Bald=1', 'either a sign or a value'), ('=1', 'name is missing'),
])
def test_parse_attrs_refuses(text, msg):
    with pytest.raises(UserError, match=msg.replace('?', r'\?').replace('+', r'\+')) as e: parse_attrs(text, NAMES)
    assert '\n' not in str(e.value)


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.sampled_from(NAMES), st.sampled_from(['1', '+1', '-1', '0', 'true', 'false', 'sign+', 'sign-'])))
def test_parse_attrs_round_trip(items):
    text = ','.join((n if v == 'sign+' else f'-{n}') if v.startswith('sign') else f'{n}={v}' for n, v in items.items())
    want = {n: (1.0 if v in ('1', '+1', 'true', 'sign+') else -1.0) for n, v in items.items()}
    assert parse_attrs(text, NAMES) == want


# -- unnamed attributes -------------------------------------------------------------------------------------------

def test_unnamed_attributes_follow_the_training_prevalence(faces_1k):
    prev = attribute_prevalence(faces=faces_1k)
    torch.testing.assert_close(prev, (faces_1k.subset('train').attrs > 0).float().mean(0))
    a = sample_attributes({'Smiling': -1.0}, faces_1k.attr_names, 6000, prev, torch.Generator().manual_seed(1))
    assert (a[:, faces_1k.attr_index('Smiling')] == -1).all() and set(a.unique().tolist()) == {-1.0, 1.0}
    others = [i for i, n in enumerate(faces_1k.attr_names) if n != 'Smiling']
    assert ((a[:, others] > 0).float().mean(0) - prev[others]).abs().max() < 0.03
    assert (sample_attributes({}, faces_1k.attr_names, 3, unnamed='absent') == -1).all()
    m = sample_attributes({'Eyeglasses': 1.0}, faces_1k.attr_names, 40, generator=torch.Generator().manual_seed(0), unnamed='match', faces=faces_1k)
    train = faces_1k.subset('train').attrs
    assert all((train == row).all(1).any() for row in m)                   # each row is a real training face's vector
    with pytest.raises(UserError, match='prevalence, match, absent'): sample_attributes({}, faces_1k.attr_names, 1, unnamed='mean')


# -- sampling -----------------------------------------------------------------------------------------------------

def test_sample_command(runs, tmp_path, run_cli):
    code, out, err = run_cli('sample', runs['acvae-gan'], '--attrs', 'Smiling,Eyeglasses,-Wearing_Hat', '--n', '5', '--seed', '1', '--out', tmp_path/'a.png')
    assert code == 0, err
    assert 'named: Smiling=+1, Eyeglasses=+1, Wearing_Hat=-1' in out and 'training prevalence' in out
    with Image.open(tmp_path/'a.png') as im: assert im.size == (2 + 3 * 66, 2 + 2 * 66)       # 5 faces, 3 per row
    run_cli('sample', runs['acvae-gan'], '--attrs', 'Smiling,Eyeglasses,-Wearing_Hat', '--n', '5', '--seed', '1', '--out', tmp_path/'b.png')
    run_cli('sample', runs['acvae-gan'], '--attrs', 'Smiling,Eyeglasses,-Wearing_Hat', '--n', '5', '--seed', '2', '--out', tmp_path/'c.png')
    assert (tmp_path/'a.png').read_bytes() == (tmp_path/'b.png').read_bytes()
    assert (tmp_path/'a.png').read_bytes() != (tmp_path/'c.png').read_bytes()
    code, out, err = run_cli('sample', runs['vae'], '--attrs', 'Smiling', '--n', '2', '--out', tmp_path/'v.png', '--scale', '2')
    assert code == 0 and 'unconditional' in err
    with Image.open(tmp_path/'v.png') as im: assert im.size == (2 + 2 * 130, 2 + 130)
    for args, msg in [(['--attrs', 'Smilng'], 'did you mean Smiling'), (['--attrs', 'Smiling=2'], 'must be 1'),
                      (['--n', '0'], '--n must be at least 1'), (['--unnamed', 'often'], 'prevalence, match, absent')]:
        code, _, err = run_cli('sample', runs['acvae-gan'], *args, '--out', tmp_path/'x.png')
        assert code == 2 and msg in err and len(err.strip().splitlines()) == 1, err
    code, _, err = run_cli('sample', runs['vae'], '--attrs', 'Smilng', '--out', tmp_path/'x.png')
    assert code == 2 and 'did you mean Smiling' in err                     # typos caught for unconditional runs too
    code, _, err = run_cli('sample', tmp_path/'nope', '--out', tmp_path/'x.png')
    assert code == 2 and 'not a crvae run' in err


def test_sample_faces_named_attributes_are_kept(runs, faces_1k):
    m = load(runs['acvae-gan'])
    s = sample_faces(m, {'Bald': 1.0, 'Smiling': -1.0}, n=4, seed=0, faces=faces_1k)
    assert (s['attrs'][:, faces_1k.attr_index('Bald')] == 1).all() and (s['attrs'][:, faces_1k.attr_index('Smiling')] == -1).all()
    assert s['images'].dtype == torch.uint8 and s['images'].shape == (4, 3, 64, 64)


# -- images, editing, reconstruction ------------------------------------------------------------------------------

def test_load_face_image_crops_the_centre(tmp_path, faces_1k, face_file):
    x = load_face_image(face_file)
    assert x.shape == (3, 64, 64) and x.dtype == torch.uint8
    assert (x.float() - faces_1k.subset('test').images[0].float()).abs().mean() < 12
    tall = Image.new('RGBA', (40, 100), (255, 0, 0, 255)); tall.paste((0, 0, 255, 255), (0, 30, 40, 70)); tall.save(tmp_path/'t.png')
    y = load_face_image(tmp_path/'t.png', 32)                                  # the blue centre square, any mode
    assert y.shape == (3, 32, 32) and y[2].float().mean() > 200 and y[0].float().mean() < 30
    Image.new('L', (10, 10), 128).save(tmp_path/'g.png')
    assert load_face_image(tmp_path/'g.png').shape == (3, 64, 64)
    (tmp_path/'n.png').write_text('not a png')
    with pytest.raises(UserError, match='not an image'): load_face_image(tmp_path/'n.png')
    with pytest.raises(UserError, match='no such image file'): load_face_image(tmp_path/'missing.png')
    with pytest.raises(UserError, match='is a folder'): load_face_image(tmp_path)


def test_edit_changes_only_the_asked_attributes(runs, faces_1k):
    m = load(runs['acvae-gan'])
    tst = faces_1k.subset('test')
    x, a = tst.images[1], tst.attrs[1]
    i = faces_1k.attr_index('Eyeglasses')
    e = edit_face(m, x, a, {'Eyeglasses': 1.0}, faces_1k.attr_names)
    assert torch.equal(e['source'], a) and e['target'][i] == 1.0
    assert torch.equal(torch.cat([e['target'][:i], e['target'][i + 1:]]), torch.cat([a[:i], a[i + 1:]]))
    same = edit_face(m, x, a, {'Eyeglasses': float(a[i])}, faces_1k.attr_names)
    assert torch.equal(same['edited'], same['reconstruction'])           # no change: the edit is the reconstruction
    with torch.no_grad(): assert torch.equal(reconstruct_face(m, x, a), same['reconstruction'])
    given, how = estimate_source_attributes(m, x, {'Bald': 1.0}, faces_1k.attr_names, faces=faces_1k)
    assert given[faces_1k.attr_index('Bald')] == 1.0 and how['Bald'] == 'given' and len(how) == faces_1k.n_attrs


def test_edit_and_reconstruct_commands(runs, tmp_path, run_cli, face_file):
    nocl = tmp_path/'no-classifiers'; nocl.mkdir()
    code, out, err = run_cli('edit', runs['acvae-gan'], face_file, '--set', 'Eyeglasses=1', '--set', 'Smiling=0', '--attrs', 'Bald=0',
                             '--classifiers', nocl, '--out', tmp_path/'e.png', '--compare', tmp_path/'s.png')
    assert code == 0, err
    assert 'Eyeglasses=+1, Smiling=-1' in out and '1 given' in err and 'most common value' in err
    with Image.open(tmp_path/'e.png') as im: assert im.size == (64, 64)
    with Image.open(tmp_path/'s.png') as im: assert im.size[0] >= 3 * 64
    code, out, err = run_cli('reconstruct', runs['vae'], face_file, '--out', tmp_path/'r.png', '--scale', '2')
    assert code == 0, err
    with Image.open(tmp_path/'r.png') as im: assert im.size == (128, 128)
    code, out, err = run_cli('reconstruct', runs['acvae-gan'], face_file, '--out', tmp_path/'r2.png', '--classifiers', nocl)
    assert code == 0 and 'most common value' in err
    for argv, msg in [(['edit', runs['vae'], face_file, '--set', 'Eyeglasses=1'], 'crvae reconstruct'),
                      (['edit', runs['cgan'], face_file, '--set', 'Eyeglasses=1'], 'no encoder'),
                      (['reconstruct', runs['cgan'], face_file], 'no encoder'),
                      (['edit', runs['acvae-gan'], face_file], 'say what to change'),
                      (['edit', runs['acvae-gan'], face_file, '--set', 'Eyeglases=1'], 'did you mean Eyeglasses'),
                      (['edit', runs['acvae-gan'], face_file, '--set', 'Eyeglasses=maybe'], 'must be 1'),
                      (['edit', runs['acvae-gan'], face_file, '--set', 'Bald', '--attrs', 'Bld'], 'did you mean Bald'),
                      (['edit', runs['acvae-gan'], tmp_path/'none.jpg', '--set', 'Bald'], 'no such image file'),
                      (['reconstruct', runs['vae'], face_file, '--scale', '0'], '--scale must be at least 1')]:
        code, _, err = run_cli(*argv)
        assert code == 2 and msg in err and len(err.strip().splitlines()) == 1, (argv, err)


def test_a_16_bit_or_rotated_image_is_read_by_value_and_upright(tmp_path):
    "reconstruct/edit read images as the data readers do: 16-bit grey by value (not nearly white), EXIF orientation applied."
    import numpy as np
    from PIL import Image
    from crvae.sampling import load_face_image
    g8 = (np.arange(64 * 64).reshape(64, 64) % 256).astype(np.uint8)
    Image.fromarray(g8).save(tmp_path/'g8.png')
    Image.fromarray(g8.astype(np.uint16) * 257).save(tmp_path/'g16.png')
    assert (load_face_image(tmp_path/'g8.png').int() - load_face_image(tmp_path/'g16.png').int()).abs().max() <= 1
    rgb = np.zeros((64, 64, 3), np.uint8); rgb[:32] = 255                         # white on top
    im = Image.fromarray(rgb).rotate(90, expand=True)                             # stored rotated: white on the left
    exif = Image.Exif(); exif[0x0112] = 6                                         # "rotate 90 clockwise to view"
    im.save(tmp_path/'rot.jpg', exif=exif.tobytes(), quality=95)
    x = load_face_image(tmp_path/'rot.jpg').float()
    assert x[:, :32].mean() > 200 and x[:, 32:].mean() < 50                       # upright again: white on top
