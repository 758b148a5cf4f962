"The avatar dataset, the CelebA and folder readers, batching."
import json

import numpy as np
import pytest
import torch

import crvae.data as D
from crvae.core import UserError


def test_prevalence_between_5_and_95_percent(faces_1k):
    prev = ((faces_1k.attrs + 1) / 2).mean(0)
    bad = {n: round(float(p), 3) for n, p in zip(faces_1k.attr_names, prev) if not 0.05 < p < 0.95}
    assert not bad, f'attributes outside 5-95% prevalence: {bad}'
    assert len(faces_1k.attr_names) >= 24


def test_splits_and_shapes(faces_1k):
    assert faces_1k.images.shape == (1000, 3, 64, 64) and faces_1k.images.dtype == torch.uint8
    assert set(faces_1k.attrs.unique().tolist()) == {-1.0, 1.0}
    counts = [(faces_1k.split == s).sum().item() for s in range(3)]
    assert 700 < counts[0] < 900 and 50 < counts[1] < 150 and 50 < counts[2] < 150
    assert faces_1k.parts.shape == (1000, len(D.PART_FAMILIES))
    for j, fam in enumerate(D.PART_FAMILIES):
        assert faces_1k.parts[:, j].max() < len(faces_1k.part_names[fam])


def test_attributes_follow_parts(faces_1k):
    "Each attribute is +1 exactly when its part is in the table's set (hair colours only when hair shows)."
    fams = list(D.PART_FAMILIES)
    for k, (name, (fam, parts, _)) in enumerate(D.ATTRIBUTE_TABLE.items()):
        names = np.array(D.PART_FAMILIES[fam])[faces_1k.parts[:, fams.index(fam)].numpy()]
        on = np.isin(names, list(parts))
        if fam == 'hair_color':
            tops = np.array(D.TOPS)[faces_1k.parts[:, fams.index('top')].numpy()]
            on &= ~np.isin(tops, D.HATS + ['NONE'])
        assert ((faces_1k.attrs[:, k].numpy() > 0) == on).all(), name


def test_correlations_documented_in_the_notebook(faces_1k):
    "The hidden presentation variable: beards only with no long hair much more often than chance, etc."
    a = lambda n: faces_1k.attrs[:, faces_1k.attr_index(n)].numpy() > 0
    assert np.corrcoef(~a('No_Beard'), a('Long_Hair'))[0, 1] < -0.1
    assert np.corrcoef(a('Smiling'), a('Eyes_Closed'))[0, 1] > 0.1


def test_bytes_do_not_depend_on_workers(tmp_path):
    a = D.build_avatars(n=150, size=32, seed=3, root=tmp_path/'w1', workers=1, progress=False)
    b = D.build_avatars(n=150, size=32, seed=3, root=tmp_path/'w2', workers=2, progress=False)
    for f in ('images.npy', 'attrs.npy', 'parts.npy', 'split.npy'):
        assert (np.load(a/f) == np.load(b/f)).all(), f


def test_prefix_property_and_seed(tmp_path):
    small = D.load_avatars(n=20, size=32, seed=3, root=tmp_path, workers=1, progress=False)
    big = D.load_avatars(n=150, size=32, seed=3, root=tmp_path, workers=1, progress=False)
    other = D.load_avatars(n=20, size=32, seed=4, root=tmp_path, workers=1, progress=False)
    assert torch.equal(small.images, big.images[:20]) and torch.equal(small.attrs, big.attrs[:20])
    assert not torch.equal(small.images, other.images)
    assert len({p.name for p in tmp_path.iterdir()}) == 3   # three settings, three caches, never mixed


def test_cache_is_reused(tmp_path):
    p = D.build_avatars(n=10, size=32, root=tmp_path, workers=1, progress=False)
    mtime = (p/'images.npy').stat().st_mtime_ns
    assert D.build_avatars(n=10, size=32, root=tmp_path, workers=1, progress=False) == p
    assert (p/'images.npy').stat().st_mtime_ns == mtime


def test_two_builders_of_one_cache_both_succeed(tmp_path, monkeypatch):
    "Two processes (e.g. two notebooks under `nbdev-test --n-workers 2`) build the same cache at once: the one that "
    "finishes second keeps the first one's folder instead of failing on the rename."
    import shutil, crvae.core
    def other_process_finishes_first(tmp):                        # called with each whole temporary file or folder
        if tmp.is_dir(): shutil.copytree(tmp, tmp.parent/tmp.name[1:].rsplit('.', 2)[0])   # `.NAME.xxxx.tmp` -> NAME
    monkeypatch.setattr(crvae.core, '_before_replace', other_process_finishes_first)
    p = D.build_avatars(n=10, size=32, root=tmp_path, workers=1, progress=False)
    monkeypatch.setattr(crvae.core, '_before_replace', None)
    assert [q.name for q in tmp_path.iterdir()] == [p.name]       # one cache, no temporary folder left
    assert len(D.load_avatars(n=10, size=32, root=tmp_path, progress=False)) == 10


@pytest.mark.parametrize('damage', ['delete_attrs', 'truncate_images', 'bad_manifest'])
def test_damaged_cache_is_reported(tmp_path, damage):
    p = D.build_avatars(n=10, size=32, root=tmp_path, workers=1, progress=False)
    if damage == 'delete_attrs': (p/'attrs.npy').unlink()
    if damage == 'truncate_images': (p/'images.npy').write_bytes((p/'images.npy').read_bytes()[:500])
    if damage == 'bad_manifest': (p/'manifest.json').write_text('{')
    with pytest.raises(UserError, match='rebuild|delete'): D.load_avatars(n=10, size=32, root=tmp_path, progress=False)
    D.build_avatars(n=10, size=32, root=tmp_path, workers=1, progress=False, rebuild=True)   # the fix works
    assert len(D.load_avatars(n=10, size=32, root=tmp_path, progress=False)) == 10


def test_interrupted_build_leaves_nothing(tmp_path, monkeypatch):
    calls = []
    real = D._render_chunk
    def flaky(args):
        calls.append(1)
        if len(calls) == 2: raise KeyboardInterrupt
        return real(args)
    monkeypatch.setattr(D, '_render_chunk', flaky)
    with pytest.raises(KeyboardInterrupt): D.build_avatars(n=300, size=32, root=tmp_path, workers=1, progress=False)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize('kw,msg', [(dict(n=0), 'positive'), (dict(size=-64), 'positive'), (dict(size=8), 'too small')])
def test_bad_build_arguments(tmp_path, kw, msg):
    with pytest.raises(UserError, match=msg): D.build_avatars(root=tmp_path, progress=False, **kw)


@pytest.mark.parametrize('layout', ['official', 'kaggle'])
def test_celeba_layouts(tmp_path, layout):
    root = D.make_fake_celeba(tmp_path/layout, n=12, layout=layout)
    d = D.load_celeba(root, size=32, out=tmp_path/'cache', workers=1, progress=False)
    assert d.images.shape == (12, 3, 32, 32) and d.attr_names == ['Smiling', 'Eyeglasses', 'Male']
    assert set(d.attrs.unique().tolist()) <= {-1.0, 1.0}
    assert (d.identities is not None) == (layout == 'official')
    assert d.split.tolist() == [0] * 10 + [1, 2]
    # the crop: the cached pixels are the centre box of the JPEG, resized
    from PIL import Image
    img = Image.open(root/('img_align_celeba/img_align_celeba' if layout == 'kaggle' else 'img_align_celeba')/'000001.jpg').convert('RGB')
    ref = np.asarray(img.crop(D.CELEBA_CROP).resize((32, 32), Image.BILINEAR, reducing_gap=None)).transpose(2, 0, 1)
    assert (d.images[0].numpy() == ref).all()


def test_celeba_zero_one_attributes_become_pm1(tmp_path):
    root = D.make_fake_celeba(tmp_path/'c', n=4)
    t = (root/'list_attr_celeba.txt').read_text().replace('-1', ' 0')
    (root/'list_attr_celeba.txt').write_text(t)
    d = D.load_celeba(root, size=16, out=tmp_path/'cache', workers=1, progress=False)
    assert set(d.attrs.unique().tolist()) <= {-1.0, 1.0}


@pytest.mark.parametrize('fault,msg', [
    ('no_folder', 'does not exist'),
    ('no_attr', 'list_attr_celeba.txt'),
    ('no_partition', 'list_eval_partition.txt'),
    ('no_images_dir', 'img_align_celeba'),
    ('missing_jpeg', '000005.jpg'),
    ('corrupt_jpeg', '000003.jpg'),
    ('bad_header', 'malformed'),
    ('bad_count', 'announces'),
    ('bad_value', 'malformed'),
])
def test_celeba_errors_name_the_file(tmp_path, fault, msg):
    root = D.make_fake_celeba(tmp_path/'c', n=8)
    if fault == 'no_folder': root = tmp_path/'nope'
    if fault == 'no_attr': (root/'list_attr_celeba.txt').unlink()
    if fault == 'no_partition': (root/'list_eval_partition.txt').unlink()
    if fault == 'no_images_dir':
        import shutil; shutil.rmtree(root/'img_align_celeba')
    if fault == 'missing_jpeg': (root/'img_align_celeba/000005.jpg').unlink()
    if fault == 'corrupt_jpeg': (root/'img_align_celeba/000003.jpg').write_bytes(b'\xff\xd8 truncated')
    if fault.startswith('bad_'):
        lines = (root/'list_attr_celeba.txt').read_text().splitlines()
        if fault == 'bad_header': lines[1] = '5 o clock shadow!!'
        if fault == 'bad_count': lines[0] = '99'
        if fault == 'bad_value': lines[3] = lines[3][:-2] + ' x'
        (root/'list_attr_celeba.txt').write_text('\n'.join(lines) + '\n')
    with pytest.raises(UserError, match=msg):
        D.load_celeba(root, size=16, out=tmp_path/'cache', workers=1, progress=False)
    assert not (tmp_path/'cache').exists()   # nothing half-made


def test_folder_reader(tmp_path):
    from PIL import Image
    (tmp_path/'imgs/sub').mkdir(parents=True)
    for i in range(6): Image.new('RGB', (50 + i, 40), (i * 40, 0, 0)).save(tmp_path/'imgs'/('sub' if i % 2 else '')/f'{i}.png')
    (tmp_path/'imgs/readme.txt').write_text('not an image')
    d = D.load_folder(tmp_path/'imgs', size=16, out=tmp_path/'cache', workers=1, progress=False)
    assert d.images.shape == (6, 3, 16, 16) and d.n_attrs == 0
    (tmp_path/'empty').mkdir()
    with pytest.raises(UserError, match='no images'): D.load_folder(tmp_path/'empty', out=tmp_path/'c2')


def test_load_faces_dispatch(faces_1k):
    with pytest.raises(UserError, match='did you mean'): D.load_faces('avatar')
    with pytest.raises(UserError, match='--root'): D.load_faces('folder')
    assert len(D.load_faces('avatars', n=1000, progress=False)) == 1000


def test_batches(faces_1k):
    g = torch.Generator().manual_seed(0)
    batches = list(D.iterate_batches(faces_1k.subset('test'), 16, flip=True, generator=g))
    x, a = batches[0]
    assert x.shape == (16, 3, 64, 64) and x.dtype == torch.float32 and -1 <= x.min() and x.max() <= 1
    assert a.shape == (16, 32)
    g2 = torch.Generator().manual_seed(0)
    x2, _ = next(D.iterate_batches(faces_1k.subset('test'), 16, flip=True, generator=g2))
    assert torch.equal(x, x2)   # seeded: same order, same flips
    with pytest.raises(UserError, match='larger than'): next(D.iterate_batches(faces_1k.subset('test'), 5000))


def test_subset_and_attr_index(faces_1k):
    with pytest.raises(UserError, match='did you mean Smiling'): faces_1k.attr_index('Smilling')
    with pytest.raises(UserError, match='unknown split'): faces_1k.subset('val')
    assert len(faces_1k.subset('train')) + len(faces_1k.subset('valid')) + len(faces_1k.subset('test')) == 1000


def test_face_dataset(faces_1k):
    ds = D.FaceDataset(faces_1k, 'valid', flip=True)
    x, a = ds[3]
    assert x.shape == (3, 64, 64) and a.shape == (32,) and len(ds) == len(faces_1k.subset('valid'))
    loader = torch.utils.data.DataLoader(ds, batch_size=8)
    assert next(iter(loader))[0].shape == (8, 3, 64, 64)


def test_cli_data(run_cli, tmp_path):
    code, out, err = run_cli('data', 'avatars', '--n', '12', '--size', '32', '--out', tmp_path, '--workers', '1')
    assert code == 0 and 'built' in out
    code, out, err = run_cli('data', 'avatars', '--n', '12', '--size', '32', '--out', tmp_path)
    assert code == 0 and 'reused' in out
    code, out, err = run_cli('data', 'celeba', '--root', tmp_path/'nothing')
    assert code == 2 and 'does not exist' in err


def test_data_readme_has_the_attribute_table():
    from pathlib import Path
    readme = (Path(__file__).resolve().parents[1]/'data'/'README.md').read_text()
    assert D.attribute_table_markdown() in readme, 'data/README.md is out of date: paste crvae.data.attribute_table_markdown()'
