"""Copy edits made in an exported module back into its notebook (an authoring aid; the notebooks stay the source).

    python tools/pysync.py crvae/metrics.py [crvae/data.py ...]

Each `# %% ../nbs/NB.ipynb #ID` block of the module replaces the code of the notebook cell with that id; the cell's
leading `#|` directive lines are kept. New cells must be added in the notebook. Run `nbdev-export` afterwards: it
must leave the module unchanged.
"""
import json, re, sys
from pathlib import Path

MARK = re.compile(r'^# %% (\S+\.ipynb) #(\w+)\s*$')
ABS = re.compile(r'^(\s*)from \.([\w.]*) import', re.M)     # nbdev exports `from crvae.x import` as `from .x import`

def blocks(py: Path):
    "{(notebook, cell id): code} of an exported module."
    out, key, buf = {}, None, []
    def flush():
        if key is not None:
            while buf and not buf[-1].strip(): buf.pop()
            out[key] = '\n'.join(buf)
    for line in py.read_text().splitlines():
        m = MARK.match(line)
        if m or line.startswith('# %% auto'):
            flush(); buf.clear()
            key = ((py.parent / m.group(1)).resolve(), m.group(2)) if m else None
        elif key is not None: buf.append(line)
    flush()
    return out

def sync(py: Path) -> int:
    changed, by_nb, lib = 0, {}, py.parent.name
    for (nb, cid), code in blocks(py).items(): by_nb.setdefault(nb, {})[cid] = code
    for nb, codes in by_nb.items():
        d = json.loads(nb.read_text())
        for c in d['cells']:
            if c.get('id') not in codes: continue
            src = ''.join(c['source']).splitlines()
            head = []
            while src and src[0].startswith('#|'): head.append(src.pop(0))
            code = ABS.sub(lambda m: f"{m.group(1)}from {lib}{'.' if m.group(2) else ''}{m.group(2)} import", codes.pop(c['id']))
            new = '\n'.join(head + [code])
            if new != ''.join(c['source']):
                c['source'] = new.splitlines(True); changed += 1
        if codes: sys.exit(f'{py}: cells {sorted(codes)} not found in {nb.name}')
        nb.write_text(json.dumps(d, indent=1, ensure_ascii=False) + '\n')
    return changed

if __name__ == '__main__':
    for p in sys.argv[1:]: print(f'{p}: {sync(Path(p))} cell(s) updated')
