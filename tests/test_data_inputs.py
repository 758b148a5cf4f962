"""Data read right (02b_data, 02a_image_files): each bad input a user can hand `crvae data` is refused with exit code 2, one
line, no traceback and nothing changed on disk; each odd but valid one (16-bit, EXIF-rotated, a byte-order mark, an
image replaced with its mtime kept) is read by value."""
import hashlib, json, os, shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import crvae.data as D
from crvae.core import UserError


@pytest.fixture
def home(tmp_path, monkeypatch):
    "A private data folder ($CRVAE_DATA)."
    monkeypatch.setenv('CRVAE_DATA', str(tmp_path/'home'))
    return tmp_path/'home'


def _tree(*roots) -> dict:
    "Every file and folder under `roots`: its bytes' hash and mtime (to assert nothing changed)."
    out = {}
    for r in roots:
        for p in sorted(Path(r).rglob('*')) if Path(r).exists() else []:
            out[str(p)] = (p.is_dir(), None if p.is_dir() else hashlib.sha1(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
    return out


def _refused(run_cli, argv, msg, *roots):
    "`crvae ARGV` exits 2 with one line containing `msg`, no traceback, and leaves `roots` as they were."
    before = _tree(*roots)
    code, out, err = run_cli(*argv)
    lines = [l for l in err.splitlines() if l.strip() and '%|' not in l]
    assert code == 2 and len(lines) == 1 and 'Traceback' not in err and msg in lines[0], err
    assert _tree(*roots) == before
    return lines[0]


def _celeba(tmp_path, n=8):
    return D.make_fake_celeba(tmp_path/'c', n=n)


def _append(path, text): path.write_text(path.read_text() + text)


# ---- list files: duplicates, count line, case of file names -------------------------------------------------------

@pytest.mark.parametrize('fault,msg', [
    ('dup_partition', "list_eval_partition.txt line 9 lists 000002.jpg again (first at line 2, partition 0; here 2)"),
    ('dup_identity', "identity_CelebA.txt line 9 lists 000003.jpg again (first at line 3, identity 3; here 4)"),
    ('dup_attr', "list_attr_celeba.txt line 11 is malformed: 000001.jpg is listed again (first at line 3)"),
    ('huge_count', "list_attr_celeba.txt line 1 is malformed: the first line, a 5000-digit number, is no count of images"),
    ('jpg_case', "img_align_celeba/000004.JPG is listed as 000004.jpg"),
    ('jpg_case_kaggle', "000004.JPG is listed as 000004.jpg (" ),
])
def test_bad_list_files_are_one_line(tmp_path, home, run_cli, fault, msg):
    root = D.make_fake_celeba(tmp_path/'c', n=8, layout='kaggle' if fault.endswith('kaggle') else 'official')
    imgs = root/('img_align_celeba/img_align_celeba' if fault.endswith('kaggle') else 'img_align_celeba')
    if fault == 'dup_partition': _append(root/'list_eval_partition.txt', '000002.jpg 2\n')
    if fault == 'dup_identity': _append(root/'identity_CelebA.txt', '000003.jpg 4\n')
    if fault == 'dup_attr':
        t = (root/'list_attr_celeba.txt').read_text().splitlines(True)
        (root/'list_attr_celeba.txt').write_text('9\n' + ''.join(t[1:]) + t[2])
    if fault == 'huge_count':
        t = (root/'list_attr_celeba.txt').read_text().splitlines(True)
        (root/'list_attr_celeba.txt').write_text('9' * 5000 + '\n' + ''.join(t[1:]))
    if fault.startswith('jpg_case'): (imgs/'000004.jpg').rename(imgs/'000004.JPG')
    line = _refused(run_cli, ['data', 'celeba', '--root', root, '--size', 16, '--workers', 1], msg, root, home)
    assert 'cut short' not in line


@pytest.mark.parametrize('which', ['list_attr_celeba.txt', 'list_eval_partition.txt', 'identity_CelebA.txt',
                                   'list_attr_celeba.csv', 'list_eval_partition.csv'])
def test_a_byte_order_mark_is_read_as_absent(tmp_path, which):
    root = D.make_fake_celeba(tmp_path/'c', n=8, layout='kaggle' if which.endswith('.csv') else 'official')
    clean = D.load_celeba(root, size=16, out=tmp_path/'a', workers=1, progress=False)
    (root/which).write_bytes(b'\xef\xbb\xbf' + (root/which).read_bytes())
    marked = D.load_celeba(root, size=16, out=tmp_path/'b', workers=1, progress=False)
    assert (marked.attrs == clean.attrs).all() and (marked.split == clean.split).all() and len(marked) == 8
    if clean.identities is not None: assert (marked.identities == clean.identities).all()


# ---- images read by value ------------------------------------------------------------------------------------------

def _grey(seed=0, shape=(40, 30)):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


@pytest.mark.parametrize('mode', ['I;16', 'I', 'F', 'LA', 'RGBA', 'P', 'CMYK'])
def test_every_mode_is_read_by_value(tmp_path, home, mode):
    "Each mode is cached as the 8-bit RGB picture it shows (16-bit grey within one level of its 8-bit twin)."
    from crvae.images import _load_image
    g = _grey()
    rgb = np.stack([g, g[::-1], 255 - g], -1) if mode in ('RGBA', 'P', 'CMYK') else np.stack([g] * 3, -1)
    src, ref = tmp_path/'src', tmp_path/'ref'; src.mkdir(); ref.mkdir()
    im = {'I;16': lambda: Image.fromarray(g.astype(np.uint16) * 257),
          'I': lambda: Image.fromarray(g.astype(np.int32) * 257, 'I'),
          'F': lambda: Image.fromarray(g.astype(np.float32) / 255, 'F'),
          'LA': lambda: Image.fromarray(np.stack([g, np.full_like(g, 255)], -1), 'LA'),
          'RGBA': lambda: Image.fromarray(np.dstack([rgb, np.full_like(g, 255)]), 'RGBA'),
          'P': lambda: Image.fromarray(rgb).quantize(256),
          'CMYK': lambda: Image.fromarray(rgb).convert('CMYK')}[mode]()
    f = src/('a.tiff' if mode in ('I', 'F') else 'a.jpg' if mode == 'CMYK' else 'a.png')
    im.save(f, **({'quality': 100} if mode == 'CMYK' else {}))
    assert Image.open(f).mode == mode
    shown = rgb if mode not in ('P', 'CMYK') else np.asarray(Image.open(f).convert('RGB'))   # PIL converts these two by value
    Image.fromarray(shown).save(ref/'a.png')
    if f.suffix == '.tiff': a = _load_image(f, 16)            # no folder suffix for TIFF: read the file itself
    else: a = D.load_folder(src, size=16, out=tmp_path/'ca', workers=1, progress=False).images[0].numpy()
    b = D.load_folder(ref, size=16, out=tmp_path/'cb', workers=1, progress=False).images[0].numpy()
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1, (mode, np.abs(a.astype(int) - b.astype(int)).max())


def test_a_16_bit_grey_celeba_image_matches_its_8_bit_version(tmp_path):
    root = _celeba(tmp_path)
    one = root/'img_align_celeba/000001.jpg'
    g = np.asarray(Image.open(one).convert('L'))
    Image.fromarray(g).save(tmp_path/'g8.png')
    a = D.load_celeba(root, size=32, out=tmp_path/'c0', workers=1, progress=False)
    one.unlink(); Image.fromarray(g.astype(np.uint16) * 257).save(one.with_suffix('.png'))
    one.with_suffix('.png').rename(one)                       # a 16-bit PNG under CelebA's .jpg name: read by content
    b = D.load_celeba(root, size=32, out=tmp_path/'c1', workers=1, progress=False)
    from crvae.images import _load_image
    ref = _load_image(tmp_path/'g8.png', 32, D.CELEBA_CROP)
    assert np.abs(b.images[0].numpy().astype(int) - ref.astype(int)).max() <= 1
    assert b.images[0].float().mean() < 200 and torch_equal(b.images[1:], a.images[1:])


def torch_equal(a, b): return bool((a == b).all())


def test_an_exif_rotated_image_is_read_upright_not_called_too_small(tmp_path, home, run_cli):
    root = _celeba(tmp_path)
    one = root/'img_align_celeba/000002.jpg'
    a = D.load_celeba(root, size=32, out=tmp_path/'c0', workers=1, progress=False)
    rgb = np.asarray(Image.open(one).convert('RGB'))
    side = Image.fromarray(np.rot90(rgb, -1).copy())          # stored turned right (218 wide, 178 high): "rotate 270 cw"
    ex = side.getexif(); ex[0x0112] = 8
    side.save(one, exif=ex, quality=95)
    code, out, err = run_cli('data', 'celeba', '--root', root, '--size', 32, '--workers', 1)
    assert code == 0 and 'too small' not in err, err
    b = D.load_celeba(root, size=32, workers=1, progress=False)
    assert (b.images[1].float() - a.images[1].float()).abs().mean() < 8     # the upright face, JPEG noise aside


# ---- caches keyed by content, format checked, superseded ones listed and pruned ------------------------------------

def test_an_image_replaced_with_its_mtime_kept_rebuilds_the_cache(tmp_path, home, run_cli):
    "`cp -p other.jpg 000001.jpg` with the same size: the old face is never served."
    root = _celeba(tmp_path)
    imgs = root/'img_align_celeba'
    a = D.load_celeba(root, size=16, workers=1, progress=False)
    one, st = imgs/'000001.jpg', (imgs/'000001.jpg').stat()
    other = tmp_path/'other.jpg'
    Image.fromarray(np.full((218, 178, 3), 200, np.uint8)).save(other, quality=90)
    data = other.read_bytes()
    assert len(data) < st.st_size
    other.write_bytes(data + b'\0' * (st.st_size - len(data)))           # same size (JPEG ignores trailing bytes)
    shutil.copy2(other, one); os.utime(one, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (one.stat().st_size, one.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    code, out, err = run_cli('data', 'celeba', '--root', root, '--size', 16, '--workers', 1)
    assert code == 0 and 'built (' in out, out + err
    b = D.load_celeba(root, size=16, workers=1, progress=False)
    assert abs(b.images[0].float().mean().item() - 200) < 3 and torch_equal(b.images[1:], a.images[1:])
    code, out, err = run_cli('data', 'celeba', '--root', root, '--size', 16, '--workers', 1)
    assert code == 0 and '\nreused in' in out


def test_a_touched_or_copied_folder_is_reused_after_one_read(tmp_path, home):
    root = _celeba(tmp_path)
    p = D._celeba_cache(root, 16, None, 1, False, None)
    for f in (root/'img_align_celeba').iterdir(): os.utime(f)             # new times, same bytes
    assert D._celeba_cache(root, 16, None, 1, False, None) == (p[0], False)
    assert D._celeba_cache(root, 16, None, 1, False, None) == (p[0], False)


@pytest.mark.parametrize('damage,msg', [
    ('format_2', 'has format version 2, which this crvae does not read (it reads 1); rebuild it: crvae data avatars --n 10 --size 32'),
    ('float_images', 'images.npy holds float32, not uint8; rebuild it: crvae data avatars --n 10 --size 32'),
    ('int64_split', 'split.npy holds int64, not int8; rebuild it'),
])
def test_a_cache_of_another_format_is_refused(tmp_path, home, run_cli, damage, msg):
    p = D.build_avatars(n=10, size=32, workers=1, progress=False)
    if damage == 'format_2':
        man = json.loads((p/'manifest.json').read_text()); man['format_version'] = 2
        (p/'manifest.json').write_text(json.dumps(man))
    if damage == 'float_images': np.save(p/'images.npy', np.load(p/'images.npy').astype(np.float32))
    if damage == 'int64_split': np.save(p/'split.npy', np.load(p/'split.npy').astype(np.int64))
    _refused(run_cli, ['data', 'avatars', '--n', 10, '--size', 32], msg, home)
    with pytest.raises(UserError, match='rebuild it'): D.load_faces('avatars', n=10, size=32, progress=False)
    code, out, err = run_cli('data', 'avatars', '--n', 10, '--size', 32, '--rebuild')                # the fix it names works
    assert code == 0 and len(D.load_avatars(n=10, size=32, progress=False)) == 10


def test_a_celeba_cache_of_another_format_names_its_rebuild(tmp_path, home, run_cli):
    root = _celeba(tmp_path)
    p, _ = D._celeba_cache(root, 16, None, 1, False, None)
    man = json.loads((p/'manifest.json').read_text()); man['format_version'] = 'x'
    (p/'manifest.json').write_text(json.dumps(man))
    _refused(run_cli, ['data', 'celeba', '--root', root, '--size', 16], f"then crvae data celeba --root {root.resolve()} --size 16",
             root, home)


def test_superseded_caches_are_listed_with_their_size_and_pruned(tmp_path, home, run_cli):
    root = _celeba(tmp_path)
    old, _ = D._celeba_cache(root, 16, None, 1, False, None)
    t = (root/'list_eval_partition.txt').read_text()
    (root/'list_eval_partition.txt').write_text(t.replace('000001.jpg 0', '000001.jpg 1'))
    code, out, err = run_cli('data', 'celeba', '--root', root, '--size', 16, '--workers', 1)
    new = Path(next(l for l in out.splitlines() if l.startswith('built (')).rsplit(': ', 1)[1])
    assert code == 0 and new != old and 'note: 1 superseded or damaged cache(s)' in out and 'crvae data list --prune' in out, out
    code, out, err = run_cli('data', 'list')
    assert code == 0 and f'| superseded by {new.name} | ' in out and '| ok | ' in out and ' MB | ' in out, out
    code, out, err = run_cli('data', 'list', '--prune')
    assert code == 0 and 'removed 1 superseded or damaged cache(s)' in out and not old.exists() and new.exists(), out
    assert '| superseded by' not in run_cli('data', 'list')[1]


def test_a_relative_root_is_resolved_before_it_is_recorded(tmp_path, monkeypatch):
    "run.json records the data folder itself: resumed from another folder, a relative --root would name other data."
    import crvae.training as T
    seen = {}
    def stop(data, root, *a, **k): seen['root'] = root; raise UserError('stop here')
    monkeypatch.setattr(T, 'load_faces', stop)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match='stop here'): T.train('cvae', tmp_path/'run', data='folder', root='faces', steps=1)
    assert seen['root'] == str(tmp_path.resolve()/'faces')
