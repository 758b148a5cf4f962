"The README is generated from nbs/index.ipynb, and CI runs exactly its commands."
import re, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands():
    blocks = re.findall(r'```bash\n(.*?)```', (ROOT/'README.md').read_text(), re.S)
    return [b.strip() for b in blocks]


def test_readme_matches_index():
    r = subprocess.run([sys.executable, 'tools/readme.py', '--check'], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_ci_runs_the_readme_install_and_test_commands():
    install, test, main_job = readme_commands()[:3]
    ci = (ROOT/'.ci'/'run').read_text().splitlines()
    assert install in ci and test in ci, (install, test)
    assert ci.index(install) < ci.index(test)
    assert install.endswith('pip install -e ".[dev]"') and test == 'make test'
    assert main_job.startswith('crvae ')


def test_torch_is_not_pinned_to_the_local_cpu_wheel():
    import tomllib
    deps = tomllib.loads((ROOT/'pyproject.toml').read_text())['project']['dependencies']
    torch_deps = [d for d in deps if re.match(r'torch(vision)?\b', d)]
    assert torch_deps and not any('==' in d or '2.13' in d for d in torch_deps), torch_deps


def test_settings_ini_is_absent_and_explained():
    assert not (ROOT/'settings.ini').exists()
    assert 'settings.ini' in (ROOT/'README.md').read_text()
