"The avatar dataset, the CelebA and folder readers, batching."
import json, os

import numpy as np
import pytest
import torch

import crvae.avatars as A
import crvae.data as D
from crvae.core import UserError
from crvae.face_dataset import FaceDataset
from helpers.write_hook import before_replace


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
    assert faces_1k.parts.shape == (1000, len(A.PART_FAMILIES))
    for j, fam in enumerate(A.PART_FAMILIES):
        assert faces_1k.parts[:, j].max() < len(faces_1k.part_names[fam])


def test_attributes_follow_parts(faces_1k):
    "Each attribute is +1 exactly when its part is in the table's set (hair colours only when hair shows)."
    fams = list(A.PART_FAMILIES)
    for k, (name, (fam, parts, _)) in enumerate(A.ATTRIBUTE_TABLE.items()):
        names = np.array(A.PART_FAMILIES[fam])[faces_1k.parts[:, fams.index(fam)].numpy()]
        on = np.isin(names, list(parts))
        if fam == 'hair_color':
            tops = np.array(A.TOPS)[faces_1k.parts[:, fams.index('top')].numpy()]
            on &= ~np.isin(tops, A.HATS + ['NONE'])
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
    with before_replace(other_process_finishes_first):
        p = D.build_avatars(n=10, size=32, root=tmp_path, workers=1, progress=False)
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
    ds = FaceDataset(faces_1k, 'valid', flip=True)
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
    assert A.attribute_table_markdown() in readme, 'data/README.md is out of date: paste crvae.avatars.attribute_table_markdown()'


# -- reliability (issue 18): a full disk, stale caches, wrong data, leaked temporaries, one-line errors ----------------

def _disk_with_free(free):
    import shutil
    return lambda path: shutil._ntuple_diskusage(10**12, 10**12 - free, free)


@pytest.mark.parametrize('what', ['avatars', 'celeba', 'folder'])
def test_a_disk_too_small_is_refused_before_writing(tmp_path, monkeypatch, what):
    "The free space is checked against the estimated size before the first byte: a clear message, nothing left behind."
    import shutil
    root = D.make_fake_celeba(tmp_path/'c', n=8)
    monkeypatch.setattr(shutil, 'disk_usage', _disk_with_free(500_000))
    out = tmp_path/'out'
    with pytest.raises(UserError, match=r'not enough free space for the .* cache: it needs about 1\.\d MB .* has 0\.5 MB free; '
                                        r'free some space or choose a folder on a bigger disk \(--out DIR\)'):
        if what == 'avatars': D.build_avatars(n=200, size=32, root=out, workers=1, progress=False)
        if what == 'celeba': D.load_celeba(root, size=128, out=out, workers=1, progress=False)
        if what == 'folder': D.load_folder(root/'img_align_celeba', size=128, out=out, workers=1, progress=False)
    assert not out.exists() or list(out.iterdir()) == []


def test_a_disk_that_fills_up_while_writing_is_a_user_error(tmp_path, monkeypatch):
    "Another writer takes the space after the check: the image writes fail with ENOSPC, a `UserError`; the temporary goes."
    import errno
    monkeypatch.setattr(D, '_check_space', lambda *a, **k: None)
    def full(self, first, block): raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(D._NpyWriter, 'write', full)
    with pytest.raises(UserError, match='no space left on the device while writing .*avatars-32px-n20-.*: free some space'):
        D.build_avatars(n=20, size=32, root=tmp_path, workers=1, progress=False)
    assert list(tmp_path.iterdir()) == []


def _in_a_child(f) -> tuple[int|None, str]:
    "Run `f()` in a forked child, so that a signal (SIGBUS) kills the child and not the test run: (signal or None, what "
    "it returned or the `UserError` it raised)."
    rd, wr = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            try: msg = str(f())
            except UserError as e: msg = str(e)
            os.write(wr, msg.encode())
        finally: os._exit(0)
    os.close(wr); _, status = os.waitpid(pid, 0)
    msg = os.read(rd, 100_000).decode(); os.close(rd)
    return (os.WTERMSIG(status) if os.WIFSIGNALED(status) else None), msg


def test_a_full_tmpfs_is_a_message_not_a_signal(small_disk, monkeypatch):
    "On a real 256 kB file system (a tmpfs; root only): the free-space check's message; with the check off, the ENOSPC of "
    "the image writes as a `UserError`, never the SIGBUS (exit 135) of a memory-mapped images.npy; no temporary left."
    small = small_disk('256k')
    build = lambda: D.build_avatars(n=2000, size=32, root=small/'av', workers=1, progress=False)
    sig, msg = _in_a_child(build)
    assert sig is None and msg.startswith('not enough free space for the avatars cache: it needs about 7.3 MB'), (sig, msg)
    assert ' has 0.3 MB free; free some space or choose a folder on a bigger disk (--out DIR)' in msg, msg
    monkeypatch.setattr(D, '_check_space', lambda *a, **k: None)
    sig, msg = _in_a_child(build)
    assert sig is None, f'the build died of signal {sig}'
    assert msg.startswith('no space left on the device while writing') and 'free some space' in msg, msg
    assert [q.name for q in small.rglob('*')] == ['av'] and list((small/'av').iterdir()) == []


def _same_size_edit(path, old, new):
    t = path.read_text(); assert len(old) == len(new) and t.count(old) == 1, old
    path.write_text(t.replace(old, new))


def test_the_celeba_cache_follows_its_files(tmp_path, monkeypatch, run_cli):
    "The partition and the attributes edited in place (same sizes): the cache is made again, never served stale; "
    "an untouched folder says 'reused'."
    monkeypatch.setenv('CRVAE_DATA', str(tmp_path/'home'))
    root = D.make_fake_celeba(tmp_path/'c', n=12)
    code, out, err = run_cli('data', 'celeba', '--root', root, '--size', 16, '--workers', 1)
    assert code == 0 and 'built (' in out
    code, out, err = run_cli('data', 'celeba', '--root', root, '--size', 16, '--workers', 1)
    assert code == 0 and '\nreused in' in out and 'built' not in out
    d = D.load_celeba(root, size=16, workers=1, progress=False)
    assert d.split[0] == 0
    _same_size_edit(root/'list_eval_partition.txt', '000001.jpg 0', '000001.jpg 2')
    code, out, err = run_cli('data', 'celeba', '--root', root, '--size', 16, '--workers', 1)
    assert code == 0 and 'built (' in out
    assert D.load_celeba(root, size=16, workers=1, progress=False).split[0] == 2
    line = (root/'list_attr_celeba.txt').read_text().splitlines()[2]          # 000001.jpg's attributes
    flipped = line[:-2] + (' 1' if line.endswith('-1') else '-1')
    _same_size_edit(root/'list_attr_celeba.txt', line, flipped)
    e = D.load_celeba(root, size=16, workers=1, progress=False)
    assert e.attrs[0, -1] == -d.attrs[0, -1] and torch.equal(e.attrs[1:], d.attrs[1:])
    # the same with one `out` folder: its manifest records what it was made from
    assert D.load_celeba(root, size=16, out=tmp_path/'o', workers=1, progress=False).split[0] == 2
    _same_size_edit(root/'list_eval_partition.txt', '000001.jpg 2', '000001.jpg 1')
    assert D.load_celeba(root, size=16, out=tmp_path/'o', workers=1, progress=False).split[0] == 1


def test_the_folder_cache_follows_its_files_and_says_reused(tmp_path, monkeypatch, run_cli):
    from PIL import Image
    monkeypatch.setenv('CRVAE_DATA', str(tmp_path/'home'))
    (tmp_path/'imgs').mkdir()
    for i in range(4): Image.new('RGB', (20, 20), (60 * i, 0, 0)).save(tmp_path/'imgs'/f'{i}.png')
    assert 'built (' in run_cli('data', 'folder', '--root', tmp_path/'imgs', '--size', 16, '--workers', 1)[1]
    assert '\nreused in' in run_cli('data', 'folder', '--root', tmp_path/'imgs', '--size', 16, '--workers', 1)[1]
    Image.new('RGB', (20, 20), (0, 0, 250)).save(tmp_path/'imgs'/'1.png')               # one image replaced in place
    d = D.load_folder(tmp_path/'imgs', size=16, workers=1, progress=False)
    assert d.images[1, 2].float().mean() > 200


def _lines(path, k, new):
    t = path.read_text().splitlines(); t[k] = new; path.write_text('\n'.join(t) + '\n')


@pytest.mark.parametrize('fault,layout,msg', [
    ('dup_attr', 'official', r'list_attr_celeba.txt line 2 is malformed: the header names the attribute Smiling twice'),
    ('dup_attr', 'kaggle', r'list_attr_celeba.csv line 1 is malformed: the header names the attribute Smiling twice'),
    ('dup_image', 'official', r'list_attr_celeba.txt line 6 is malformed: 000002.jpg is listed again \(first at line 4\)'),
    ('partition_3', 'official', r'list_eval_partition.txt line 5: partition 3 \(of 000005.jpg\) is not one of 0 \(train\), 1 \(valid\), 2 \(test\)'),
    ('partition_3', 'kaggle', r'list_eval_partition.csv line 6: partition 3 \(of 000005.jpg\) is not one of 0'),
    ('cut_attrs', 'kaggle', r'list_attr_celeba.csv ends at line 7 \(000006.jpg\), but .*list_eval_partition.csv line 8 goes on with '
                            r'000007.jpg \(2 image\(s\) it lacks\): the attribute file looks cut short'),
    ('cut_both', 'kaggle', r'list_attr_celeba.csv ends at line 7 \(000006.jpg\), but .*img_align_celeba also holds 2 image\(s\) it lacks, '
                           r'e.g. 000007.jpg: the attribute file looks cut short'),
    ('tiny_image', 'official', r'image .*000004.jpg is 1x1 px, too small for the crop box \(15, 35, 163, 183\) \(at least 163x183 px\)'),
])
def test_wrong_celeba_data_is_named_with_its_line(tmp_path, fault, layout, msg):
    from PIL import Image
    root = D.make_fake_celeba(tmp_path/'c', n=8, layout=layout)
    ext = 'csv' if layout == 'kaggle' else 'txt'
    attrs, part = root/f'list_attr_celeba.{ext}', root/f'list_eval_partition.{ext}'
    if fault == 'dup_attr': _lines(attrs, 0 if layout == 'kaggle' else 1, ('image_id,' if layout == 'kaggle' else '') +
                                   ('Smiling,Eyeglasses,Smiling' if layout == 'kaggle' else 'Smiling Eyeglasses Smiling'))
    if fault == 'dup_image': _lines(attrs, 5, attrs.read_text().splitlines()[3])
    if fault == 'partition_3': _lines(part, 5 if layout == 'kaggle' else 4, part.read_text().splitlines()[5 if layout == 'kaggle' else 4][:-1] + '3')
    if fault.startswith('cut_'): attrs.write_text(''.join(attrs.read_text().splitlines(True)[:7]))
    if fault == 'cut_both': part.write_text(''.join(part.read_text().splitlines(True)[:7]))
    if fault == 'tiny_image': Image.new('RGB', (1, 1)).save(root/'img_align_celeba'/'000004.jpg')
    with pytest.raises(UserError, match=msg): D.load_celeba(root, size=16, out=tmp_path/'cache', workers=1, progress=False)
    assert not (tmp_path/'cache').exists()


def test_a_tiny_image_in_a_folder_is_named(tmp_path):
    from PIL import Image
    (tmp_path/'imgs').mkdir()
    Image.new('RGB', (40, 30)).save(tmp_path/'imgs'/'a.png'); Image.new('RGB', (1, 1)).save(tmp_path/'imgs'/'b.png')
    with pytest.raises(UserError, match=r'b.png is 1x1 px: too small for --size 64 \(its centred square must be at least 16 px'):
        D.load_folder(tmp_path/'imgs', size=64, out=tmp_path/'cache', workers=1, progress=False)
    assert not (tmp_path/'cache').exists()
    (tmp_path/'imgs'/'b.png').unlink()
    assert len(D.load_folder(tmp_path/'imgs', size=64, out=tmp_path/'cache', workers=1, progress=False)) == 1   # 30 px: upscaled 2.1x


def test_dead_writers_temporaries_are_removed_live_ones_kept(tmp_path):
    "Temporaries carry their writer's pid and machine: a build removes those of dead writers of this machine (and old "
    "unnamed ones untouched for a day), never a live writer's, another machine's or anything else."
    import crvae.core as core
    tag = core._machine_tag()
    names = {'dead': f'.avatars-64px-n30000-seed0-abcd1234.pid99999999-{tag}-k2j4h5g6.tmp',
             'live': f'.avatars-64px-n100-seed0-abcd1234.pid{os.getpid()}-{tag}-a1b2c3d4.tmp',
             'other_machine': f'.avatars-64px-n100-seed1-abcd1234.pid99999999-{"0" * 8 if tag != "0" * 8 else "1" * 8}-zzzzzzzz.tmp',
             'old_unnamed': '.avatars-64px-n500-seed0-abcd1234.x8y7z6w5.tmp',
             'new_unnamed': '.avatars-64px-n600-seed0-abcd1234.q1w2e3r4.tmp',
             'dead_file': f'.manifest.json.pid99999999-{tag}-f1e2d3c4.tmp',
             'not_ours': '.keep.tmp'}
    for k, n in names.items():
        if k.endswith('file') or k == 'not_ours': (tmp_path/n).write_text('x')
        else: (tmp_path/n).mkdir(); (tmp_path/n/'images.npy').write_bytes(b'0' * 100)
    day_ago = __import__('time').time() - 2 * 86400
    for p in (tmp_path/names['old_unnamed'], tmp_path/names['old_unnamed']/'images.npy'): os.utime(p, (day_ago, day_ago))
    p = D.build_avatars(n=10, size=32, root=tmp_path, workers=1, progress=False)
    left = {k for k, n in names.items() if (tmp_path/n).exists()}
    assert left == {'live', 'other_machine', 'new_unnamed', 'not_ours'}
    assert sorted(q.name for q in tmp_path.iterdir() if not q.name.startswith('.')) == [p.name]


def test_temporary_names_carry_the_writer(tmp_path, monkeypatch):
    "What `atomic_dir` names its temporary folder (the test of two builders above parses `.NAME.xxxx.tmp` too)."
    import re, crvae.core as core
    seen = []
    with before_replace(seen.append):
        D.build_avatars(n=10, size=32, root=tmp_path, workers=1, progress=False)
    assert seen and all(re.fullmatch(core._TMP_NAME, t.name) and int(re.fullmatch(core._TMP_NAME, t.name)['pid']) == os.getpid()
                        for t in seen), [t.name for t in seen]


def _png_claiming(w, h) -> bytes:
    "A PNG whose header claims `w` x `h` pixels (PIL refuses to open it before reading any pixel)."
    import struct, zlib
    chunk = lambda t, d: struct.pack('>I', len(d)) + t + d + struct.pack('>I', zlib.crc32(t + d))
    return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, 8, 2, 0, 0, 0)) +
            chunk(b'IDAT', zlib.compress(b'\0' * 64)) + chunk(b'IEND', b''))


@pytest.mark.parametrize('case,msg', [
    ('seed', '--seed must be an integer of 0 or more, got -3'),
    ('size_0', "--size must be a positive integer from 16 to 1024 px (64 or 128 for the papers' models); 0 is invalid"),
    ('size_huge', "--size 100000 is too large: use 16 to 1024 px (64 or 128 for the papers' models)"),
    ('celeba_root_file', 'is a file, not a folder (an archive: unpack it first); pass --root DIR with the folder that holds img_align_celeba'),
    ('folder_root_file', 'is a file, not a folder; pass --root DIR'),
    ('huge_png', "huge.png is too large to read safely (over 179 megapixels, PIL's decompression-bomb limit); shrink it or remove the file"),
    ('workers', '--workers must be a positive integer, got -2'),
])
def test_cli_data_errors_are_one_line(tmp_path, run_cli, case, msg):
    root = D.make_fake_celeba(tmp_path/'c', n=4)
    (tmp_path/'celeba.zip').write_bytes(b'PK'); (tmp_path/'notes.txt').write_text('x')
    (tmp_path/'big').mkdir(); (tmp_path/'big'/'huge.png').write_bytes(_png_claiming(15000, 15000))
    argv = {'seed': ['avatars', '--n', 4, '--seed', -3, '--out', tmp_path/'o'],
            'size_0': ['celeba', '--root', root, '--size', 0],
            'size_huge': ['celeba', '--root', root, '--size', 100000],
            'celeba_root_file': ['celeba', '--root', tmp_path/'celeba.zip'],
            'folder_root_file': ['folder', '--root', tmp_path/'notes.txt'],
            'huge_png': ['folder', '--root', tmp_path/'big', '--workers', 1],
            'workers': ['folder', '--root', tmp_path/'big', '--workers', -2]}[case]
    code, out, err = run_cli('data', *argv)
    lines = [l for l in err.splitlines() if l.strip() and '%|' not in l]
    assert code == 2 and len(lines) == 1 and 'Traceback' not in err and msg in lines[0], err


def test_cli_data_list_shows_a_damaged_cache(tmp_path, monkeypatch, run_cli):
    monkeypatch.setenv('CRVAE_DATA', str(tmp_path))
    D.build_avatars(n=10, size=32, workers=1, progress=False)
    (tmp_path/'avatars'/'broken').mkdir(); (tmp_path/'avatars'/'broken'/'manifest.json').write_text('{"n": 3')
    code, out, err = run_cli('data', 'list')
    assert code == 0 and err == '', err
    assert '| ? |  |  | damaged: delete the folder and build it again |' in out and '| avatars | 10 | 32 | ok |' in out
