"""Write README.md from nbs/index.ipynb (Quarto, which `nbdev-readme` needs, cannot be installed here).

    python tools/readme.py          # write README.md
    python tools/readme.py --check  # exit 1 if README.md is out of date
"""
import json, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEADER = '<!-- Generated from nbs/index.ipynb by tools/readme.py: edit the notebook, then run `make readme`. -->\n\n'

def render(nb_path=ROOT/'nbs'/'index.ipynb') -> str:
    nb = json.loads(Path(nb_path).read_text(encoding='utf-8'))
    parts = []
    for c in nb['cells']:
        src = ''.join(c['source'])
        lines = [l for l in src.splitlines() if not l.startswith('#|')]
        if c['cell_type'] == 'markdown':   # pictures: relative to nbs/ in the notebook, to the root in README.md
            parts.append('\n'.join(lines).strip().replace('](images/', '](nbs/images/'))
        elif c['cell_type'] == 'code' and '#| hide' not in src and lines:
            parts.append('```python\n' + '\n'.join(lines).strip() + '\n```')
            for o in c.get('outputs', []):
                text = o.get('text') or o.get('data', {}).get('text/plain')
                if text: parts.append('```\n' + ''.join(text).rstrip() + '\n```')
    return HEADER + '\n\n'.join(p for p in parts if p) + '\n'

if __name__ == '__main__':
    text, readme = render(), ROOT/'README.md'
    if '--check' in sys.argv:
        if not readme.exists() or readme.read_text(encoding='utf-8') != text:
            sys.exit('README.md is out of date with nbs/index.ipynb: run `make readme` (python tools/readme.py)')
    else: readme.write_text(text, encoding='utf-8')
