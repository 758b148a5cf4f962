"""The package's modules with their line counts and the import graph between them (module-level and in-function
imports alike), with any cycle, the exported notebook cells too long to read at once, and every module that imports a
module of a later-numbered notebook: `python tools/modules.py` (`--max-cell N` sets the cell limit, default 60 lines). The
refactoring issue's yardsticks: no module over 500 lines, no line over 140 characters, no cycle, no exported cell over 60
lines, and no import of a later notebook (`later_imports`: a student reading the notebooks in order meets no name before
its lesson)."""
import ast, json, re, sys
from pathlib import Path

PKG = Path(__file__).resolve().parents[1]/'crvae'
NBS = PKG.parent/'nbs'


def imports(py: Path) -> set[str]:
    "The crvae modules that `py` imports, anywhere in the file."
    out = set()
    for node in ast.walk(ast.parse(py.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ''
            if node.level == 1: base = f'crvae.{base}' if base else 'crvae'
            if base == 'crvae': out |= {f'crvae.{a.name}' for a in node.names if (PKG/f'{a.name}.py').exists()}
            elif base.startswith('crvae.'): out.add(base)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith('crvae.')}
    return out - {f'crvae.{py.stem}'}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    "Every elementary cycle's smallest rotation, found by depth-first search (the graph is small)."
    found = set()
    def walk(start, node, path):
        for nxt in graph.get(node, ()):
            if nxt == start: found.add(tuple(path))
            elif nxt not in path and nxt > start: walk(start, nxt, path + [nxt])
    for s in sorted(graph): walk(s, s, [s])
    return [list(c) for c in sorted(found)]


def long_cells(limit:int=60, nbs:Path=NBS) -> list[tuple[str, int, int]]:
    "(notebook, cell number, lines) of every exported code cell of `nbs` longer than `limit` lines (directives included)."
    out = []
    for nb in sorted(nbs.glob('*.ipynb')):
        for i, c in enumerate(json.loads(nb.read_text())['cells']):
            src = ''.join(c['source']).splitlines()
            exported = any(l.startswith('#|') and l.split()[1:2] in (['export'], ['exporti']) for l in src)
            if c['cell_type'] == 'code' and exported and len(src) > limit: out.append((nb.stem, i, len(src)))
    return out


def report_long_cells(limit:int=60):
    "Print the exported cells over `limit` lines (a cell a student cannot read at once); returns how many."
    cells = long_cells(limit)
    print(f"\nexported cells over {limit} lines: " + ('; '.join(f'{nb} cell {i} ({n} lines)' for nb, i, n in cells) or 'none'))
    return len(cells)


BASE = {'crvae.core'}   # 01_core, the conventions (one-line errors, atomic writes): every module may use it, the 00 lessons too


def notebook_of() -> dict[str, str]:
    "Each exported module (`crvae.data`) -> the notebook that exports it (`02b_data`), from each notebook's `default_exp`."
    out = {}
    for nb in sorted(NBS.glob('*.ipynb')):
        for c in json.loads(nb.read_text())['cells']:
            m = re.search(r'^#\|\s*default_exp\s+(\S+)', ''.join(c['source']), re.M) if c['cell_type'] == 'code' else None
            if m: out[f'crvae.{m[1]}'] = nb.stem; break
    return out


def later_imports(graph: dict[str, set[str]] | None = None) -> list[tuple[str, str, str, str]]:
    """(module, its notebook, imported module, that module's notebook) for every import of a module whose notebook sorts
    after the importer's (file names in order: `02_avatars` < `02a_image_files` < `02b_data`)."""
    if graph is None: graph = {f'crvae.{p.stem}': imports(p) for p in PKG.glob('*.py') if not p.name.startswith('_')}
    nb = notebook_of()
    return sorted((m, nb[m], d, nb[d]) for m, deps in graph.items() for d in deps
                  if m in nb and d in nb and d not in BASE and nb[d] > nb[m])


def main():
    mods = sorted(p for p in PKG.glob('*.py') if not p.name.startswith('_'))
    graph = {f'crvae.{p.stem}': imports(p) for p in mods}
    long = 0
    print('| module | lines | lines over 140 | imports |\n|---|---|---|---|')
    for p in mods:
        lines = p.read_text().splitlines()
        n_long = sum(len(l) > 140 for l in lines); long += n_long
        print(f"| {p.stem} | {len(lines)} | {n_long} | {', '.join(sorted(m[6:] for m in graph[f'crvae.{p.stem}']))} |")
    cyc = cycles(graph)
    print(f"\n{len(mods)} modules, {sum(len(p.read_text().splitlines()) for p in mods)} lines, {long} lines over 140 characters; "
          f"cycles: {'; '.join(' -> '.join(c + [c[0]]) for c in cyc) if cyc else 'none'}")
    report_long_cells(int(sys.argv[sys.argv.index('--max-cell') + 1]) if '--max-cell' in sys.argv else 60)
    late = later_imports(graph)
    print(f"imports of a later notebook: {len(late) or 'none'}")
    for m, nm, d, nd in late: print(f"  {m[6:]} ({nm}) imports {d[6:]} ({nd})")
    return 1 if cyc or late else 0


if __name__ == '__main__': sys.exit(main())
