r"""Render the notebooks in nbs/ to a static, offline course site (Quarto, which `nbdev-preview` needs, cannot be installed here).

    python tools/site.py              # build _site/ (`make docs`); exit 1 on a broken link, a missing picture or bad maths
    python tools/site.py --out DIR    # build into DIR instead
    python tools/site.py --check      # build into a temporary folder and also fail on warnings; writes nothing

What it does, per notebook, as committed (with whatever outputs it holds):
- the cells go through nbconvert's HTML exporter (the body-only classic template, without the In/Out prompts);
  nbdev's `#| hide` cells are left out, and the directives that only matter to `nbdev-export` are stripped;
- the maths, `$...$` and `$$...$$` in markdown (never in fenced code or code spans), becomes MathML at build time
  (latex2mathml), which Chromium renders natively: no MathJax, no CDN, no request leaves the page; what latex2mathml
  lacks (`aligned`, `\arg`, `\big\|`, `\_`) is rewritten first, and a formula whose MathML still shows TeX as text (an
  `&`, a `\name`) fails the build;
- a markdown table printed to stdout (`print(markdown_table(...))`) is shown as a table, the rest of the print as text;
- links to notebooks (`08c_training.ipynb#Section`) become links to pages (`08c_training.html#Section`), and a code span
  that names a notebook (`08c_training`) becomes such a link; other relative links and markdown pictures
  (`images/...png`) are copied into the site (files outside nbs/ under _repo/); output pictures are embedded by nbconvert
  as data URIs and shown at their own size, never shrunk (a wider one scrolls), so that figure text drawn at 9 px or
  more stays readable; a broken link or picture, or anything a page would load from the network, fails the build;
- every page gets a sidebar in course order: the tracks and notebook tables of the notebook map in nbs/index.ipynb
  (a notebook missing from the map is listed last, with a warning), and index.ipynb is the home page.
The build is deterministic: the same notebooks give the same bytes.
"""
from __future__ import annotations

import argparse, hashlib, html, json, re, shutil, sys, tempfile, time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT/'nbs'
MARKER = '.crvae-site'                         # marks a folder this script made (and may replace)
STAMP = '.crvae-site-build.json'               # what a build read (a hash of its sources) and found: lets a test reuse it
EXPORT_ONLY = ('export', 'exports', 'exporti', 'default_exp')   # nbdev directives that mean nothing to a reader


# ---------------------------------------------------------------- the course map

def course_map(nbs: Path = NBS) -> list[tuple[str, list[str]]]:
    """[(track, [notebook stems])] in course order: each `### heading` of index.ipynb that has notebook-table rows
    (`| \\`08c_training\\` | ...`) is a track; notebooks in no table come last, as 'Not in the notebook map'."""
    index = json.loads((nbs/'index.ipynb').read_text(encoding='utf-8'))
    tracks, name, seen = {}, None, set()
    for cell in index['cells']:
        if cell['cell_type'] != 'markdown': continue
        for line in ''.join(cell['source']).splitlines():
            if line.startswith('### '): name = line[4:].strip()
            elif line.startswith('## '): name = None
            m = re.match(r'\|\s*`([^`|]+)`\s*\|', line)
            if name and m and m[1] not in seen and (nbs/f'{m[1]}.ipynb').exists():
                tracks.setdefault(name, []).append(m[1]); seen.add(m[1])
    rest = sorted(p.stem for p in nbs.glob('*.ipynb') if p.stem != 'index' and p.stem not in seen)
    return list(tracks.items()) + ([('Not in the notebook map', rest)] if rest else [])


# ---------------------------------------------------------------- markdown: maths and notebook names

_FENCE = re.compile(r'^\s*(`{3,}|~{3,})')
_CODE_SPAN = re.compile(r'(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)', re.S)
# $$display$$ or $inline$ (not crossing a blank line), as Jupyter reads them; \$ is a dollar
_MATH = re.compile(r'(?<!\\)\$\$(.+?)\$\$|(?<![\\$])\$((?:[^$\\\n]|\\.|\n(?![ \t]*\n))+?)\$', re.S)
_PLACEHOLDER = re.compile(r'CRVAEMATH(\d+)Z')


def _prose_and_code(md: str):
    "Yield (is_code, text) pieces of markdown: fenced blocks and code spans are code, the rest prose."
    lines, fence, chunk = md.splitlines(True), None, []
    def prose(text):
        at = 0
        for m in _CODE_SPAN.finditer(text):
            yield False, text[at:m.start()]; yield True, m[0]; at = m.end()
        yield False, text[at:]
    for line in lines:
        m = _FENCE.match(line)
        if fence is None and m:
            yield from prose(''.join(chunk)); chunk, fence = [line], m[1]
        elif fence is not None:
            chunk.append(line)
            if m and m[1][0] == fence[0] and len(m[1]) >= len(fence) and not line.strip()[len(m[1]):].strip():
                yield True, ''.join(chunk); chunk, fence = [], None
        else: chunk.append(line)
    if fence is not None: yield True, ''.join(chunk)
    else: yield from prose(''.join(chunk))


def prepare_markdown(md: str, maths: list, stems: set) -> str:
    """Markdown with each formula replaced by a placeholder (its (latex, display) appended to `maths`) and each code span
    that names a notebook made a link to it."""
    out = []
    for is_code, text in _prose_and_code(md):
        if is_code:
            name = text.strip('`').strip().removesuffix('.ipynb')
            line = ''.join(out).rsplit('\n', 1)[-1]
            in_link = line.count('[') > line.count(']')                   # already a link's text: leave it
            out.append(f'[{text}]({name}.ipynb)' if name in stems and not in_link and '\n' not in text else text)
            continue
        def hold(m):
            maths.append((m[1] if m[1] is not None else m[2], m[1] is not None))
            return f'CRVAEMATH{len(maths) - 1}Z'
        out.append(_MATH.sub(hold, text))
    return ''.join(out)


# TeX that latex2mathml (3.x) does not know, rewritten into TeX it does: (pattern, replacement), applied in order
_TEX_REWRITES = [
    (re.compile(r'\\(begin|end)\{(?:aligned|align)\*?\}'), r'\\\1{align*}'),   # aligned rows: an mtable, unnumbered
    (re.compile(r'\\(arg|argmax|argmin)(?![A-Za-z])'),
     lambda m: r'\operatorname{' + {'arg': 'arg', 'argmax': 'arg max', 'argmin': 'arg min'}[m[1]] + '}'),
    (re.compile(r'\\(?:big|Big|bigg|Bigg)[lrm]?\s*(?=\\\||\\[lr]?Vert(?![A-Za-z]))'), ''),  # \big\| : a plain \|
    (re.compile(r'\\[lr]?Vert(?![A-Za-z])'), r'\\|'),
    (re.compile(r'\\text\{((?:[^{}]|\{[^{}]*\})*)\}'), lambda m: r'\text{' + m[1].replace('\\_', '_') + '}'),
    (re.compile(r'(?<!\\)((?:\\\\)*)\\_'), r'\1\\text{_}'),     # \_ outside \text
    (re.compile(r'(?<!\\)((?:\\\\)*)\\(?=\n|$)'), r'\1\\ '),   # a backslash that ends a line: a space, as in TeX
]
# what no rendered formula may keep: an alignment `&` or a TeX command or backslash, left as text by the converter
_TEX_LEFT = re.compile(r'&(?!#?\w+;)|\\[A-Za-z]+|\\.?')


def tex_for_mathml(latex: str) -> str:
    "The formula with the constructs latex2mathml lacks (aligned, \\arg, \\big\\|, \\_ ...) written as ones it has."
    latex = latex.strip()
    for pattern, repl in _TEX_REWRITES: latex = pattern.sub(repl, latex)
    return latex


def mathml(latex: str, display: bool) -> str:
    "MathML for a formula; ValueError if the result still shows TeX (a literal `&` or `\\name`) as text."
    from latex2mathml.converter import convert
    out = convert(tex_for_mathml(latex), display='block' if display else 'inline')
    left = _TEX_LEFT.findall(' '.join(re.findall(r'>([^<>]*)<', out)))      # the text nodes, entities as written
    if left: raise ValueError(f'the MathML shows TeX as text: {" ".join(sorted(set(left)))}')
    return _FUNCTION.sub(r'\1<mspace width="0.167em"></mspace>', out)


# \log p as TeX sets it, with a thin space (latex2mathml writes <mi>log</mi><mi>p</mi>); none before a parenthesis
_FUNCTION = re.compile(r'(?<!<msub>)(?<!<msup>)(?<!<msubsup>)(?<!<munder>)(?<!<mover>)(?<!<munderover>)(?<!<mfrac>)(?<!<mroot>)'
                       r'(<mi>(?:log|ln|exp|sin|cos|tan|tanh|sinh|cosh|dim|ker|deg|sgn)</mi>)(?!</|<mo[^>]*>(?:\(|&#x00028;))')   # (a script's base, a last child: as is)


# ---------------------------------------------------------------- notebooks -> HTML bodies

_CELLS_TEMPLATE = r"""{%- extends 'classic/base.html.j2' -%}
{#- our own code needs no sanitising (the classic template bleaches every code cell: seconds a page) -#}
{% block input %}<div class="inner_cell"><div class="input_area">{{ cell.source | highlight_code }}</div></div>{% endblock input %}
"""


def _exporter():
    "nbconvert's HTML exporter, body only, without prompts, its BeautifulSoup pass, widget views or sanitising our code."
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter
    from nbconvert.exporters import TemplateExporter
    from nbconvert.filters import DataTypeFilter
    from pygments import highlight
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import PythonLexer

    class Exporter(HTMLExporter):
        def from_notebook_node(self, nb, resources=None, **kw):   # skips HTMLExporter's soup pass (alt texts, tab stops)
            return TemplateExporter.from_notebook_node(self, nb, resources, **kw)

    ex = Exporter(extra_loaders=[DictLoader({'cells.html.j2': _CELLS_TEMPLATE})], template_file='cells.html.j2',
                  exclude_input_prompt=True, exclude_output_prompt=True,
                  default_preprocessors=[])   # prepare_notebook does their work; each costs a notebook validation
    lexer, formatter = PythonLexer(), HtmlFormatter()
    ex.register_filter('highlight_code', lambda source, *a, **k: highlight(source, lexer, formatter))
    # no widget views or JavaScript outputs (they need scripts a static page does not load): their plain-text form instead
    ex.register_filter('filter_data_type', DataTypeFilter(display_data_priority=[
        'text/html', 'text/markdown', 'image/svg+xml', 'text/latex', 'image/png', 'image/jpeg', 'text/plain']))
    return ex


def _directives(src: str) -> dict:
    return {m[1]: (m[2] or '').strip() for m in re.finditer(r'^\s*#\|\s*([\w-]+):?(.*)$', src, re.M)}


def _joined(output: dict) -> dict:
    "A copy of an output with its texts as strings (the .ipynb file may keep them as lists of lines)."
    j = lambda v: ''.join(v) if isinstance(v, list) else v
    o = {k: j(v) if k == 'text' else v for k, v in output.items()}
    if 'data' in o: o['data'] = {k: j(v) for k, v in o['data'].items()}
    return o


_TABLE_ROW = re.compile(r'^[ \t]*\|.*\|[ \t]*$')
_TABLE_RULE = re.compile(r'^[ \t]*\|(?:[ \t]*:?-+:?[ \t]*\|)+[ \t]*$')


def _cells(row: str) -> int:
    return len(re.findall(r'(?<!\\)\|', row.strip())) - 1


def _table_row(row: str, n: int) -> str:
    "A printed table's row with the `|` that are text escaped: those in code spans, and if it has too many cells, those not between spaces."
    row = _CODE_SPAN.sub(lambda m: re.sub(r'(?<!\\)\|', r'\\|', m[0]), row)
    if _cells(row) > n: row = re.sub(r'(?<=\S)(?<!\\)\|(?=\S)', r'\\|', row.strip()) + '\n'
    return row


def _tables_shown(output: dict) -> list:
    """A printed stdout split into its text and its markdown tables (a header row, a |---| rule, rows), each table as
    a markdown output, so the page shows a table where the notebook printed one."""
    if output.get('output_type') != 'stream' or output.get('name') != 'stdout': return [output]
    lines, pieces, text, i = output['text'].splitlines(True), [], [], 0
    while i < len(lines):
        if i + 1 < len(lines) and _TABLE_ROW.match(lines[i]) and _TABLE_RULE.match(lines[i + 1]):
            j = i + 2
            while j < len(lines) and _TABLE_ROW.match(lines[j]) and not (j + 1 < len(lines) and _TABLE_RULE.match(lines[j + 1])):
                j += 1                                                           # (a rule below: the next table's header)
            if text: pieces.append(dict(output, text=''.join(text))); text = []
            table = ''.join(_table_row(l, _cells(lines[i])) for l in lines[i:j])
            pieces.append(dict(output_type='display_data', metadata={}, data={'text/markdown': table}))
            i = j
        else: text.append(lines[i]); i += 1
    if text: pieces.append(dict(output, text=''.join(text)))
    return pieces


def prepare_notebook(nb: dict, maths: list, stems: set) -> dict:
    "The notebook as a reader sees it: hidden cells gone, exporter directives stripped, maths held as placeholders."
    cells = []
    for cell in nb['cells']:
        src = ''.join(cell['source'])
        if cell['cell_type'] == 'markdown':
            cell = dict(cell, source=prepare_markdown(src, maths, stems))
        elif cell['cell_type'] == 'code':
            d = _directives(src)
            if 'hide' in d or d.get('include') == 'false': continue
            src = '\n'.join(l for l in src.splitlines() if _directives(l).keys().isdisjoint(EXPORT_ONLY)).strip('\n')
            outputs = []
            for o in ([] if d.get('output') == 'false' else cell.get('outputs', [])):
                o, last = _joined(o), outputs[-1] if outputs else {}
                if o['output_type'] == 'stream' and last.get('output_type') == 'stream' and last['name'] == o['name']:
                    last['text'] += o['text']; continue                                     # one block per stream
                outputs.append(o)
            outputs = [p for o in outputs for p in _tables_shown(o)]
            for o in outputs:
                data = o.get('data', {})
                if 'text/latex' in data and 'text/html' not in data:          # e.g. sympy: its maths through ours
                    data['text/markdown'] = data.pop('text/latex')
                if 'text/markdown' in data:
                    data['text/markdown'] = prepare_markdown(data['text/markdown'], maths, stems)
            if not src and not outputs: continue
            cell = dict(cell, source=src, outputs=outputs)
            if d.get('echo') == 'false' or not src:                               # outputs only
                cell['metadata'] = dict(cell.get('metadata', {}), transient={'remove_source': True})
        cells.append(cell)
    return dict(nb, cells=cells)


def _title(nb: dict, stem: str) -> str:
    for cell in nb['cells']:
        if cell['cell_type'] == 'markdown':
            m = re.search(r'^# (.+)$', ''.join(cell['source']), re.M)
            if m: return re.sub(r'[`*$]', '', m[1]).strip()
    return stem


# ---------------------------------------------------------------- pages

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="stylesheet" href="site.css">
</head>
<body>
<nav class="sidebar" aria-label="course">
<a class="home" href="index.html"{home_current}>crvae</a>
<p class="tagline">the course, in order</p>
{tracks}
</nav>
<main>
{body}
<footer class="pager">{pager}</footer>
</main>
</body>
</html>
"""

_CSS = """
:root { --side: 19rem; --ink: #1b1f24; --muted: #5b6470; --line: #d8dde3; --code: #f6f8fa; --accent: #0b5cad; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--ink); font: 16px/1.55 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif; }
a { color: var(--accent); }
.sidebar { position: fixed; inset: 0 auto 0 0; width: var(--side); overflow-y: auto; padding: 1rem 1rem 2rem;
  background: #f3f5f8; border-right: 1px solid var(--line); font-size: 0.9rem; }
.sidebar .home { font-weight: 700; font-size: 1.3rem; text-decoration: none; color: var(--ink); }
.sidebar .tagline { margin: 0 0 .5rem; color: var(--muted); }
.sidebar h2 { font-size: 0.8rem; text-transform: uppercase; letter-spacing: .05em; color: var(--muted); margin: 1.2rem 0 .3rem; }
.sidebar ol { list-style: none; margin: 0; padding: 0; }
.sidebar li a { display: block; padding: .2rem .4rem; border-radius: 4px; text-decoration: none; color: var(--ink); }
.sidebar li a:hover { background: #e4e8ee; }
.sidebar a[aria-current="page"] { background: #dde7f3; font-weight: 600; }
.sidebar code { color: var(--muted); font-size: 0.8rem; margin-right: .3rem; }
main { margin-left: var(--side); max-width: 62rem; padding: 1rem 2.5rem 3rem; }
h1, h2, h3 { line-height: 1.25; }
.anchor-link { visibility: hidden; margin-left: .3rem; text-decoration: none; color: var(--muted); }
h1:hover .anchor-link, h2:hover .anchor-link, h3:hover .anchor-link, h4:hover .anchor-link { visibility: visible; }
code, pre { font-family: "DejaVu Sans Mono", ui-monospace, monospace; font-size: 0.86rem; }
:not(pre) > code { background: var(--code); padding: .05rem .25rem; border-radius: 3px; }
main pre { overflow-x: auto; }                                  /* every code or text block scrolls, never cut */
.input_area { background: var(--code); border: 1px solid var(--line); border-radius: 6px; margin: .8rem 0 .3rem; }
.input_area pre { margin: 0; padding: .6rem .8rem; overflow-x: auto; }
.output_area pre, .output_text pre { margin: .2rem 0; padding: .4rem .8rem; overflow-x: auto; white-space: pre; }   /* tables keep their columns */
.output_stderr { background: #fff5f5; }
.rendered_html img { max-width: 100%; height: auto; }
/* a notebook's output picture at its own size (a wider one scrolls): its 10 px labels stay 10 px, never shrunk below 9 */
.output_area img { max-width: none; height: auto; }
.rendered_html table, .output_html table { border: 0; border-collapse: collapse; margin: .8rem 0; font-size: 0.9rem; }
.text_cell_render, .output_html, .output_markdown, .output_subarea { overflow-x: auto; }   /* wide tables scroll */
th, td { border: 1px solid var(--line); padding: .3rem .5rem; text-align: left; vertical-align: top; }
blockquote { margin: .8rem 0; padding: .1rem 1rem; border-left: 4px solid var(--line); color: var(--muted); }
math[display="block"] { display: block math; margin: .8rem 0; overflow-x: auto; }
math { font-size: 1.08em; font-family: "STIX Two Math", "Latin Modern Math", "DejaVu Math TeX Gyre", math; }   /* a font with a MATH table stretches \\Big[ */
/* aligned rows (align*): Chromium's MathML ignores columnalign/columnspacing, so the same in CSS: r l r l columns */
math mtd[columnalign="right"] { text-align: right; padding: .25em 0 .25em 1em; }
math mtd[columnalign="right"]:first-child { padding-left: 0; }
math mtd[columnalign="left"] { text-align: left; padding: .25em 0; }
.pager { display: flex; justify-content: space-between; margin-top: 3rem; padding-top: 1rem; border-top: 1px solid var(--line); }
.ansi-red-fg { color: #b22b31; } .ansi-green-fg { color: #007427; } .ansi-yellow-fg { color: #b27d12; }
.ansi-blue-fg { color: #0065ca; } .ansi-bold { font-weight: bold; }
@media (max-width: 60rem) { .sidebar { position: static; width: auto; } main { margin-left: 0; padding: 1rem; } }
"""


def _sidebar(tracks, titles, current) -> str:
    parts = []
    for name, stems in tracks:
        here = ' aria-current="page"'
        items = ''.join(f'<li><a href="{s}.html"{here if s == current else ""}><code>{html.escape(s)}</code>'
                        f'{html.escape(titles[s])}</a></li>' for s in stems)
        parts.append(f'<h2>{html.escape(name)}</h2>\n<ol>{items}</ol>')
    return '\n'.join(parts)


def _pager(order, titles, stem) -> str:
    at = order.index(stem)
    prev = f'<a rel="prev" href="{order[at - 1]}.html">&larr; {html.escape(titles[order[at - 1]])}</a>' if at else '<span></span>'
    nxt = (f'<a rel="next" href="{order[at + 1]}.html">{html.escape(titles[order[at + 1]])} &rarr;</a>'
           if at + 1 < len(order) else '<span></span>')
    return prev + nxt


_TABLE_CELL = re.compile(r'<t[dh]\b[^>]*>.*?</t[dh]>', re.S)
_CODE_TAG = re.compile(r'<code>[^<]*</code>')


def _fill_maths(body: str, maths: list, problems: list, where: str) -> str:
    "Placeholders -> MathML; inside a tag (a heading's id, an alt text) -> the LaTeX itself, escaped."
    body = re.sub(r'<[^<>]*>', lambda t: _PLACEHOLDER.sub(lambda m: html.escape(maths[int(m[1])][0].strip()), t[0]), body)
    def fill(m):
        latex, display = maths[int(m[1])]
        try: return mathml(latex, display)
        except Exception as e:                                     # noqa: BLE001 (latex2mathml raises many kinds)
            problems.append(f'{where}: cannot convert the formula ${latex.strip()}$ to MathML ({type(e).__name__}: {e})')
            return f'<code class="math-error">{html.escape(latex)}</code>'
    return _PLACEHOLDER.sub(fill, body)


_URL_ATTR = re.compile(r'''(?P<pre><[a-zA-Z][^<>]*?\s(?P<attr>href|src)=)(?P<q>["'])(?P<url>.*?)(?P=q)''', re.S)
_REMOTE = re.compile(r'^(?:[a-zA-Z][\w+.-]*:|//)')


def _relink(body, nbs, stems, copies, links, problems, where):
    """Rewrite the relative URLs of a page: notebooks -> pages, other files (pictures, data) copied into the site.
    Records (page-relative target, fragment) in `links`; a missing file or a remote resource is a problem."""
    def fix(m):
        url, tag = html.unescape(m['url']), m['pre'].split(None, 1)[0].lower()
        if _REMOTE.match(url) or url.startswith('#'):
            remote_load = m['attr'] == 'src' or tag == '<link'
            if remote_load and not url.startswith('data:') and _REMOTE.match(url):
                problems.append(f'{where}: would load {url[:80]} from the network')
            if url.startswith('#'): links.append((None, url[1:]))
            return m[0]
        path, _, frag = url.partition('#')
        path = unquote(path.split('?')[0])
        if not path: return m[0]
        src, nbs_dir = (nbs/path).resolve(), nbs.resolve()
        if path.endswith('.ipynb') and Path(path).stem in stems and src.parent == nbs_dir:
            new = f'{Path(path).stem}.html'
        elif src.is_file() and (src.is_relative_to(nbs_dir) or src.is_relative_to(ROOT)):   # a picture, a data file
            inside = src.is_relative_to(nbs_dir)
            new = src.relative_to(nbs_dir).as_posix() if inside else '_repo/' + src.relative_to(ROOT).as_posix()
            copies[new] = src
        else:
            problems.append(f'{where}: broken {"picture" if m["attr"] == "src" else "link"} {url}')
            return m[0]
        links.append((new, frag or None))
        return f'{m["pre"]}{m["q"]}{html.escape(new)}{"#" + frag if frag else ""}{m["q"]}'
    return _URL_ATTR.sub(fix, body)


@dataclass
class Report:
    out: Path
    pages: list = field(default_factory=list)
    problems: list = field(default_factory=list)      # fail the build
    warnings: list = field(default_factory=list)
    seconds: float = 0.0


def build(out: Path = ROOT/'_site', nbs: Path = NBS) -> Report:
    "Render every notebook of `nbs` into `out` (replaced if this script made it). Returns what it did and what is wrong."
    t0, out, nbs = time.perf_counter(), Path(out), Path(nbs)
    if out.exists() and any(out.iterdir()) and not (out/MARKER).exists():
        raise SystemExit(f'{out} exists and was not made by tools/site.py: refusing to replace it')
    rep = Report(out)
    tracks = course_map(nbs)
    order = ['index'] + [s for _, stems in tracks for s in stems]
    stems = set(order)
    if tracks and tracks[-1][0] == 'Not in the notebook map':
        rep.warnings.append('not in the notebook map of index.ipynb: ' + ', '.join(tracks[-1][1]))
    notebooks = {s: json.loads((nbs/f'{s}.ipynb').read_text(encoding='utf-8')) for s in order}
    titles = {s: _title(nb, s) for s, nb in notebooks.items()}

    import nbformat
    ex = _exporter()
    if out.exists(): shutil.rmtree(out)
    out.mkdir(parents=True)
    (out/MARKER).write_text('made by tools/site.py; `make docs` replaces this folder\n')
    (out/'site.css').write_text(_CSS.lstrip() + _pygments_css())
    copies, links, ids = {}, {}, {}
    for stem in order:
        where, maths = f'{stem}.ipynb', []
        nb = nbformat.from_dict(prepare_notebook(notebooks[stem], maths, stems))
        body, _ = ex.from_notebook_node(nb, resources={'metadata': {'name': stem, 'path': str(nbs)}})
        body = _fill_maths(body, maths, rep.problems, where)
        body = _TABLE_CELL.sub(lambda c: _CODE_TAG.sub(lambda m: m[0].replace('\\|', '|'), c[0]), body)   # GFM: \| in a cell's code is |
        page_links = links[f'{stem}.html'] = []
        body = _relink(body, nbs, stems, copies, page_links, rep.problems, where)
        page = _PAGE.format(title=html.escape(titles[stem] if stem == 'index' else f'{titles[stem]} · crvae'),
                            home_current=' aria-current="page"' if stem == 'index' else '',
                            tracks=_sidebar(tracks, titles, stem), body=body.strip(), pager=_pager(order, titles, stem))
        (out/f'{stem}.html').write_text(page, encoding='utf-8')
        ids[f'{stem}.html'] = {html.unescape(i) for i in re.findall(r'\sid="([^"]+)"', page)}
        rep.pages.append(f'{stem}.html')
    for rel, src in sorted(copies.items()):
        (out/rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, out/rel)
    for page, targets in links.items():                          # #anchors must exist on the page they point at
        for target, frag in targets:
            target = target or page
            if frag and target in ids and not {frag, unquote(frag)} & ids[target]:
                rep.problems.append(f'{page}: link to {target}#{frag}, but that page has no such anchor')
    rep.seconds = time.perf_counter() - t0
    (out/STAMP).write_text(json.dumps(dict(sources=source_hash(nbs), pages=rep.pages, problems=rep.problems,
                                           warnings=rep.warnings, seconds=rep.seconds), indent=1))
    return rep


def source_hash(nbs: Path = NBS) -> str:
    "A hash of what a build reads: this script, the notebooks, and the pictures and results they show."
    h = hashlib.sha1(Path(__file__).read_bytes())
    files = sorted(Path(nbs).glob('*.ipynb')) + sorted(p for d in ('images', 'results') for p in (Path(nbs)/d).rglob('*') if p.is_file())
    for p in files: h.update(str(p.relative_to(nbs)).encode()); h.update(p.read_bytes())
    return h.hexdigest()


def built_or_build(out: Path, nbs: Path = NBS, built: Path = ROOT/'_site') -> Report:
    "The report of `built` when a build made it from exactly the current sources (`make test` builds it in its docs phase), else `build(out)`."
    try:
        st = json.loads((Path(built)/STAMP).read_text())
        if st['sources'] == source_hash(nbs):
            return Report(Path(built), st['pages'], st['problems'], st['warnings'], st['seconds'])
    except (OSError, ValueError, KeyError): pass
    return build(out, nbs)


def _pygments_css() -> str:
    from pygments.formatters import HtmlFormatter
    return '\n/* code: pygments */\n' + HtmlFormatter(style='default').get_style_defs('.highlight') + '\n'


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--out', type=Path, default=ROOT/'_site', help='where to write the site (default: _site/)')
    ap.add_argument('--check', action='store_true', help='build into a temporary folder; warnings fail too')
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        rep = build(Path(tmp)/'site' if args.check else args.out)
        for w in rep.warnings: print('warning:', w)
        for p in rep.problems: print('error:', p)
        failed = bool(rep.problems or (args.check and rep.warnings))
        where = 'checked (nothing written)' if args.check else f'in {rep.out}'
        print(f'{len(rep.pages)} pages {where} in {rep.seconds:.1f} s' + (': FAILED' if failed else ''))
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
