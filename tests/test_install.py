"""The fresh-install check: build the wheel, install it with --no-deps into a new venv, import crvae and run the CLI there.

The new venv is made with --system-site-packages; since the test itself runs inside a venv (whose packages are not the
system's), a .pth file also exposes this environment's site-packages (for torch & co) without its editable crvae.
"""
import os, subprocess, sys, sysconfig, venv
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow   # 12 s: builds and installs a wheel; CI installs the project itself
def test_wheel_installs_and_runs(tmp_path):
    r = subprocess.run([sys.executable, '-m', 'pip', 'wheel', str(ROOT), '--no-deps', '-q', '-w', str(tmp_path/'dist')],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    wheel, = (tmp_path/'dist').glob('crvae-*.whl')
    env_dir = tmp_path/'venv'
    venv.create(env_dir, system_site_packages=True, with_pip=False)
    py = env_dir/'bin'/'python'
    site = subprocess.run([str(py), '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])'],
                          capture_output=True, text=True).stdout.strip()
    Path(site, '_parent_env.pth').write_text(sysconfig.get_paths()['purelib'] + '\n')
    r = subprocess.run([sys.executable, '-m', 'pip', '--python', str(py), 'install', '--no-deps', '-q', str(wheel)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    env = {k: v for k, v in os.environ.items() if k not in ('PYTHONPATH', 'VIRTUAL_ENV')}
    r = subprocess.run([str(py), '-c', 'import crvae, crvae.core, crvae.data; print(crvae.__file__)'],
                       capture_output=True, text=True, cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    assert Path(r.stdout.strip()).is_relative_to(env_dir), r.stdout   # the wheel's copy, not the checkout
    r = subprocess.run([str(env_dir/'bin'/'crvae'), '--help'], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert r.returncode == 0 and 'data' in r.stdout, r.stderr


# distribution name -> the module the library imports (where they differ)
IMPORT_NAMES = {'pillow': 'PIL', 'ipython': 'IPython', 'python-avatars': 'python_avatars', 'resvg-py': 'resvg_py'}


def test_every_import_of_the_library_is_a_declared_dependency():
    "Each third-party module that crvae/ imports (at the top or inside a function) is one of pyproject's `dependencies`,"
    " so a clean install of the README's command can import every module."
    import ast, sys, tomllib, re
    deps = tomllib.loads((ROOT/'pyproject.toml').read_text())['project']['dependencies']
    declared = {IMPORT_NAMES.get(n, n.replace('-', '_')) for n in (re.match(r'[A-Za-z0-9_.-]+', d).group(0).lower() for d in deps)}
    found = {}
    for p in (ROOT/'crvae').glob('*.py'):
        for node in ast.walk(ast.parse(p.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else [])
            for n in names: found.setdefault(n.split('.')[0], p.name)
    extra = {'crvae'} | set(sys.stdlib_module_names)
    undeclared = {m: f for m, f in found.items() if m not in extra and m not in declared}
    assert not undeclared, f'imported by crvae/ but not in pyproject dependencies: {undeclared}'

def test_every_runtime_dependency_is_used_by_the_library():
    "Each of pyproject's `dependencies` is imported somewhere in crvae/ (voila: started by `crvae app`); the notebooks' own "
    "helpers (pandas) are in the dev extra."
    import re, tomllib
    deps = tomllib.loads((ROOT/'pyproject.toml').read_text())['project']['dependencies']
    names = [re.match(r'[A-Za-z0-9_.-]+', d).group(0).lower() for d in deps]
    src = '\n'.join(p.read_text() for p in (ROOT/'crvae').glob('*.py'))
    for name in names:
        mod = IMPORT_NAMES.get(name, name.replace('-', '_'))
        used = re.search(rf'(^|;)\s*(import|from) [^\n;]*\b{mod}\b', src, re.M) or (name == 'voila' and "find_spec('voila')" in src)
        assert used, f'{name} is a dependency that crvae/ never imports: drop it, or move it to the dev extra'
