"""Convert notebooks to and from percent-format Python (an authoring aid; the notebooks stay the source).

    python tools/nb.py to-nb nbs/_src/02b_data.py nbs/02b_data.ipynb   # write a notebook (outputs dropped)
    python tools/nb.py to-py nbs/02b_data.ipynb 02b_data.py             # edit a notebook as text

Cells are separated by `# %%` (code) and `# %% [markdown]` (markdown, each line prefixed with `# `).
"""
import json, sys
from pathlib import Path

def py2cells(text):
    cells, kind, buf = [], None, []
    def flush():
        if kind is None: return
        while buf and not buf[-1].strip(): buf.pop()
        if kind == 'markdown': src = [l[2:] if l.startswith('# ') else l.lstrip('#') for l in buf]
        else: src = buf
        cells.append((kind, '\n'.join(src)))
    for line in text.splitlines():
        if line.startswith('# %%'):
            flush(); buf = []
            kind = 'markdown' if '[markdown]' in line else 'code'
        elif kind is not None: buf.append(line)
    flush()
    return cells

def to_nb(src, dst):
    cells = []
    for kind, s in py2cells(Path(src).read_text()):
        lines = s.splitlines(True)
        c = dict(cell_type=kind, metadata={}, source=lines)
        if kind == 'code': c.update(execution_count=None, outputs=[])
        cells.append(c)
    nb = dict(cells=cells, metadata=dict(kernelspec=dict(display_name='python3', language='python', name='python3')),
              nbformat=4, nbformat_minor=5)
    Path(dst).write_text(json.dumps(nb, indent=1, ensure_ascii=False) + '\n')

def to_py(src, dst):
    nb = json.loads(Path(src).read_text())
    out = []
    for c in nb['cells']:
        s = ''.join(c['source'])
        if c['cell_type'] == 'markdown':
            out.append('# %% [markdown]\n' + '\n'.join(('# ' + l) if l else '#' for l in s.split('\n')))
        else: out.append('# %%\n' + s)
    Path(dst).write_text('\n\n'.join(out) + '\n')

if __name__ == '__main__':
    cmd, src, dst = sys.argv[1:4]
    {'to-nb': to_nb, 'to-py': to_py}[cmd](src, dst)
