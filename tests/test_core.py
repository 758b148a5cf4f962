"Core conventions: user errors, atomic writes, configs, the command line."
import dataclasses, errno, json, os, subprocess, sys
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

import crvae.core as core
from crvae.core import UserError, apply_overrides, atomic_dir, atomic_write, atomic_write_text, config_from_dict, load_json, save_json


def test_atomic_write_replaces_whole(tmp_path):
    p = tmp_path/'f.json'
    save_json(p, {'a': 1}); save_json(p, {'a': 2})
    assert load_json(p) == {'a': 2}
    assert [x.name for x in tmp_path.iterdir()] == ['f.json']


def test_atomic_write_interrupted_keeps_old(tmp_path):
    p = tmp_path/'f.txt'; atomic_write_text(p, 'old')
    with pytest.raises(KeyboardInterrupt):
        with atomic_write(p, 'w') as f:
            f.write('new, half'); raise KeyboardInterrupt
    assert p.read_text() == 'old' and len(list(tmp_path.iterdir())) == 1


@pytest.mark.parametrize('err,msg', [(errno.ENOSPC, 'no space left'), (errno.EACCES, 'not writable'), (errno.EROFS, 'not writable')])
def test_atomic_write_disk_errors_become_user_errors(tmp_path, monkeypatch, err, msg):
    p = tmp_path/'f.bin'; atomic_write_text(p, 'old')
    def fail(*a, **k): raise OSError(err, os.strerror(err))
    monkeypatch.setattr(core.os, 'replace', fail)
    with pytest.raises(UserError, match=msg): atomic_write_text(p, 'new')
    assert p.read_text() == 'old' and len(list(tmp_path.iterdir())) == 1   # no temporary file left


def test_atomic_dir_interrupted_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_dir(tmp_path/'cache') as t:
            (t/'part.npy').write_bytes(b'x'); raise RuntimeError('killed')
    assert list(tmp_path.iterdir()) == []


def test_unwritable_folder_is_a_user_error(tmp_path):
    if os.geteuid() == 0: pytest.skip('root can write anywhere')
    d = tmp_path/'ro'; d.mkdir(); d.chmod(0o500)
    with pytest.raises(UserError, match='not writable'): atomic_write_text(d/'x', 'y')


def test_load_json_errors(tmp_path):
    with pytest.raises(UserError, match='missing file'): load_json(tmp_path/'nope.json')
    (tmp_path/'b.json').write_text('{')
    with pytest.raises(UserError, match='not valid JSON'): load_json(tmp_path/'b.json')


@dataclasses.dataclass(frozen=True)
class Cfg:
    width: int = 8
    lr: float = 1e-3
    mi: bool = True
    alphas: tuple = (3e-4, 2e-4)
    name: str = 'x'


@pytest.mark.parametrize('item,field,value', [('width=16', 'width', 16), ('lr=3e-4', 'lr', 3e-4), ('mi=false', 'mi', False),
                                              ('mi=1', 'mi', True), ('alphas=[1,2]', 'alphas', (1.0, 2.0)), ('name=abc', 'name', 'abc')])
def test_overrides(item, field, value):
    assert getattr(apply_overrides(Cfg(), [item]), field) == value


@pytest.mark.parametrize('item,msg', [('widht=3', 'did you mean width'), ('width=2.5', 'integer'), ('lr=abc', 'number'),
                                      ('mi=maybe', 'true or false'), ('alphas=[1,"a"]', 'list of numbers'), ('width', 'key=value')])
def test_bad_overrides(item, msg):
    with pytest.raises(UserError, match=msg): apply_overrides(Cfg(), [item])


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=30))
def test_override_parser_never_crashes(s):
    "Random --set text either applies or is a UserError, never another exception."
    try: apply_overrides(Cfg(), [s])
    except UserError: pass


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.text(max_size=8), st.integers() | st.floats(allow_nan=False) | st.text(max_size=5), max_size=4))
def test_config_loader_rejects_unknown_keys(d):
    "Every dict with a key that is not a field is refused with a UserError naming it; the others are never refused for their keys."
    unknown = set(d) - {f.name for f in dataclasses.fields(Cfg)}
    if unknown:
        with pytest.raises(UserError, match='unknown keys'): config_from_dict(Cfg, d)
    else:
        try: config_from_dict(Cfg, d)
        except TypeError: pass  # wrong value types are caught by the model builders


def test_config_loader_names_the_unknown_key():
    with pytest.raises(UserError, match=r"unknown keys \['nope'\]"): config_from_dict(Cfg, {'nope': 1})


def test_cli_help_lists_commands(run_cli):
    code, out, err = run_cli('--help')
    assert code == 0 and 'data' in out and 'version' in out


def test_cli_user_error_is_one_line_exit_2(run_cli):
    code, out, err = run_cli('data', 'avatars', '--n', '-5')
    assert code == 2 and len(err.strip().splitlines()) == 1 and 'error' in err and 'Traceback' not in err


def test_cli_debug_shows_traceback(run_cli):
    code, out, err = run_cli('--debug', 'data', 'avatars', '--n', '-5')
    assert code == 2 and 'Traceback' in err


def test_cli_unknown_command_exit_2(run_cli):
    code, out, err = run_cli('nosuchcommand')
    assert code == 2 and len(err.strip().splitlines()) == 1


def test_command_index_reads_every_module():
    idx = core.command_index()
    assert idx['data']['module'] == 'crvae.data' and 'version' in idx


def test_python_dash_m(tmp_path):
    r = subprocess.run([sys.executable, '-m', 'crvae', '--version'], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.startswith('crvae ')


def test_data_home(monkeypatch, tmp_path):
    monkeypatch.setenv('CRVAE_DATA', str(tmp_path))
    assert core.data_home() == tmp_path
    monkeypatch.delenv('CRVAE_DATA'); monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path/'xdg'))
    assert core.data_home() == tmp_path/'xdg'/'crvae'


def test_get_device():
    import torch
    assert core.get_device('cpu') == torch.device('cpu')
    assert core.get_device('auto').type in ('cpu', 'cuda', 'mps')
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match='CUDA is not available'): core.get_device('cuda')
    with pytest.raises(UserError, match='unknown device'): core.get_device('gpu0')


def test_the_command_table_is_what_the_modules_register():
    "Importing every module of `COMMAND_TABLE` registers exactly its commands, each from the module the table names."
    import importlib
    from crvae.core import COMMAND_TABLE, COMMANDS, command
    for module in {m for m, _ in COMMAND_TABLE.values()}: importlib.import_module(module)
    assert sorted(COMMANDS) == sorted(COMMAND_TABLE)
    assert all(COMMANDS[k]['module'] == m and COMMANDS[k]['help'] == h for k, (m, h) in COMMAND_TABLE.items())
    with pytest.raises(ValueError, match='add it to core.COMMAND_TABLE'): command('trian')
    def f(args): pass
    f.__module__ = 'crvae.data'
    with pytest.raises(ValueError, match='COMMAND_TABLE says crvae.training'): command('train')(f)


def test_a_notebook_copy_of_a_command_never_replaces_the_package_one(monkeypatch):
    """`nbdev-test` runs several notebooks in one process: 08c's own `train` (module `__main__`) must not replace
    crvae.training's, or a later notebook's `main(['train', ...])` runs 08c's classes (09's Ctrl-C demo then saw exit 0)."""
    monkeypatch.setattr(core, 'COMMANDS', {})
    def fn(module):
        def f(): pass
        f.__module__ = module
        return f
    notebook, package, notebook2 = fn('__main__'), fn('crvae.training'), fn('__main__')
    core.command('train')(notebook)
    assert core.COMMANDS['train']['run'] is notebook            # the notebook first: its copy is all there is
    core.command('train')(package)
    assert core.COMMANDS['train']['run'] is package             # the package replaces it ...
    core.command('train')(notebook2)
    assert core.COMMANDS['train']['run'] is package             # ... and is never replaced by a notebook's copy
    sub_nb, sub_pkg = fn('__main__'), fn('crvae.data')
    core.command('data', 'avatars', help='h')(sub_pkg); core.command('data', 'avatars', help='h')(sub_nb)
    assert core.COMMANDS['data']['subs']['avatars']['run'] is sub_pkg
