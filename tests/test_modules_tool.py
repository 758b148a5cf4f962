"""tools/modules.py reports the exported notebook cells too long to read at once."""
import json, subprocess, sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]/'tools'))
import modules


def test_long_cells(tmp_path):
    cell = lambda src: dict(cell_type='code', source=src, metadata={}, outputs=[], execution_count=None)
    nb = dict(cells=[cell('#| export\n' + 'x = 1\n' * 70), cell('x = 1\n' * 70), cell('#| export\ny = 2\n')], metadata={},
              nbformat=4, nbformat_minor=5)
    (tmp_path/'01_demo.ipynb').write_text(json.dumps(nb))
    assert modules.long_cells(60, tmp_path) == [('01_demo', 0, 71)]    # only the exported one, directives counted
    assert modules.long_cells(80, tmp_path) == []


def test_report_shows_long_cells():
    out = subprocess.run([sys.executable, 'tools/modules.py', '--max-cell', '100000'], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[1]).stdout
    assert 'exported cells over 100000 lines: none' in out
