"""Take this machine out of the executed notebooks' outputs (`make nbs` runs it after `nbdev-test --save`).

    python tools/nbout.py [NOTEBOOK ...]      # default: every nbs/*.ipynb; rewrites only notebooks that change

Outputs keep what the cells printed, with three kinds of path written the same on every machine:
a scratch folder under the temporary directory (`tempfile.gettempdir()`, then `tmpab12cd34/x.png`) becomes `$TMP/x.png`, the data cache
(`$CRVAE_DATA`) becomes `$CRVAE_DATA`, and the repository's root becomes a path relative to it. Images are left alone.
`tests/test_notebook_outputs.py` checks that no machine path is left.
"""
import json, os, re, sys, tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def rules() -> list[tuple[re.Pattern, str]]:
    "(pattern, replacement) pairs, the most specific first."
    out = []
    data = os.environ.get('CRVAE_DATA')
    if data: out.append((re.compile(re.escape(str(Path(data).resolve())) + r'(?=/|\b)'), '$CRVAE_DATA'))
    out.append((re.compile(re.escape(str(ROOT)) + '/'), ''))
    for t in {tempfile.gettempdir(), os.path.realpath(tempfile.gettempdir())}:
        out.append((re.compile(re.escape(t.rstrip('/')) + r'/[^/\s\'",:;)\]]+'), '$TMP'))   # the scratch folder itself
    home = str(Path.home())
    if home not in ('/', ''): out.append((re.compile(re.escape(home) + r'(?=/)'), '~'))
    return out


def scrub_text(s: str, rs) -> str:
    for pat, rep in rs: s = pat.sub(rep, s)
    return s


def scrub_value(v, rs):
    if isinstance(v, str): return scrub_text(v, rs)
    if isinstance(v, list): return [scrub_value(x, rs) for x in v]
    return v


def scrub_notebook(path: Path, rs) -> bool:
    "Scrub one notebook's text outputs in place; True when it changed."
    text = path.read_text()
    nb = json.loads(text)
    for c in nb['cells']:
        for o in c.get('outputs', []) if c['cell_type'] == 'code' else []:
            if 'text' in o: o['text'] = scrub_value(o['text'], rs)
            if 'traceback' in o: o['traceback'] = scrub_value(o['traceback'], rs)
            for mime, v in (o.get('data') or {}).items():
                if not mime.startswith('image/'): o['data'][mime] = scrub_value(v, rs)
    new = json.dumps(nb, indent=1, ensure_ascii=False) + '\n'
    if new == text: return False
    path.write_text(new)
    return True


if __name__ == '__main__':
    paths = [Path(p) for p in sys.argv[1:]] or sorted((ROOT/'nbs').glob('*.ipynb'))
    rs = rules()
    changed = [p.name for p in paths if scrub_notebook(p, rs)]
    print(f"machine paths taken out of {len(changed)} notebook(s)" + (f": {', '.join(changed)}" if changed else ''))
