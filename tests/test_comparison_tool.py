"""tools/comparison.py starts the long comparison's runs in a fixed order: stopped runs resume first, then pending ones in
the plan's order, except the runs named with --first (scheduling only)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]/'tools'))
import comparison


def test_next_runs_order():
    rows = [dict(run=r, status=s) for r, s in (('a-seed0', 'scored'), ('b-seed0', 'running'), ('c-seed1', 'pending'),
                                                 ('d-seed1', 'stopped'), ('e-seed0', 'pending'), ('f-seed0', 'pending'))]
    assert [r['run'] for r in comparison.next_runs(rows)] == ['d-seed1', 'c-seed1', 'e-seed0', 'f-seed0']
    got = comparison.next_runs(rows, first=('f-seed0', 'e-seed0'))
    assert [r['run'] for r in got] == ['d-seed1', 'e-seed0', 'f-seed0', 'c-seed1']      # --first keeps the plan's order among them
    assert comparison.next_runs([dict(run='a', status='scored')], first=('a',)) == []   # never restarts a finished run
