"""The notebooks in import order: a module imports only from notebooks numbered before it (`tools/modules.py`)."""
import importlib.util
from pathlib import Path

spec = importlib.util.spec_from_file_location('modules_tool', Path(__file__).resolve().parents[1]/'tools'/'modules.py')
modules = importlib.util.module_from_spec(spec); spec.loader.exec_module(modules)

# Imports of a later notebook not yet resolved, each with its reason. The set may only shrink (it is empty now): a new one
# fails the test, and so does an entry that no longer happens (remove it).
KNOWN: set[tuple[str, str]] = set()

def test_notebook_of_every_module():
    nb = modules.notebook_of()
    mods = {f'crvae.{p.stem}' for p in modules.PKG.glob('*.py') if not p.name.startswith('_')}
    assert mods - {'crvae.__main__'} <= set(nb), sorted(mods - set(nb))
    assert nb['crvae.data'] == '02b_data' and nb['crvae.avatars'] == '02_avatars'

def test_no_import_of_a_later_notebook():
    found = {(m, d) for m, _, d, _ in modules.later_imports()}
    assert not found - KNOWN, f"modules that import a later-numbered notebook: {sorted(found - KNOWN)}"
    assert not KNOWN - found, f"resolved, remove from KNOWN: {sorted(KNOWN - found)}"

def test_later_imports_finds_one():
    late = modules.later_imports({'crvae.data': {'crvae.training'}, 'crvae.training': {'crvae.data', 'crvae.core'}})
    assert late == [('crvae.data', '02b_data', 'crvae.training', '08c_training')]
