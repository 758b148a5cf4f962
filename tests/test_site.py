"""The course site (`make docs`, tools/site.py): its maths and links on hand-made markdown, then the whole site, built from
the committed notebooks, in a real browser: headless Chromium (Debian's) driven by Playwright opens every page and checks
that every picture loads, no internal link is broken, the maths rendered as MathML with no TeX left in it, no markdown
table is shown as `|---|` text, no page is wider than its 1280 px window, no output picture is shrunk below its own size
(its text, drawn at 9 px or more, stays so; test_notebook_outputs checks the sizes drawn), wide code scrolls, no request leaves the machine, and the sidebar
and the pager follow the course order. Screenshots go to $CRVAE_SCREENSHOTS (else tmp_path)."""
import importlib.util, json, os, re, sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT/'nbs'
CHROMIUM = '/usr/bin/chromium'                                    # as in test_browser.py
CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
                 '--disable-sync', '--no-first-run']
needs_chromium = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                    reason=f'{CHROMIUM} is absent: install Debian chromium (apt-get install -y chromium) '
                                           'to run the browser test')
SHOTS = {'index': 'site_index.png', '00_bound': 'site_bound_maths.png', '05_objectives': 'site_objectives_maths.png',
         '08c_training': 'site_training.png', '13_fig_blocks': 'site_fig_blocks.png', '91_differences': 'site_differences.png'}
RAW_TABLE = re.compile(r'^[ \t]*\|(?:[ \t]*:?-{3,}:?[ \t]*\|)+[ \t]*$', re.M)   # a markdown table's |---| rule as text
TEX_LEFT = re.compile(r'&|\\[A-Za-z]+|\\')                      # an alignment & or a TeX command shown in the maths


@pytest.fixture(scope='module')
def site():
    "tools/site.py as a module (tools/ is not a package, and `site` is a standard module's name)."
    spec = importlib.util.spec_from_file_location('crvae_tools_site', ROOT/'tools'/'site.py')
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def test_maths_code_and_notebook_links(site):
    "Formulas become placeholders, never inside code; \\$ stays a dollar; a code span naming a notebook becomes a link."
    maths = []
    md = ('Inline $x^2$ and\n$$\\sum_i a_i$$\n`$HOME` and `06_training`, [see `06_training`](06_training.ipynb), '
          '\\$5, and a formula over\ntwo lines $a +\nb$.\n```bash\necho $PATH $x$\n```\n')
    out = site.prepare_markdown(md, maths, {'06_training'})
    assert maths == [('x^2', False), ('\\sum_i a_i', True), ('a +\nb', False)]
    assert '`$HOME`' in out and 'echo $PATH $x$' in out and '\\$5' in out
    assert out.count('(06_training.ipynb)') == 2 and '[`06_training`](06_training.ipynb)' in out
    assert site.prepare_markdown('$a\n\nb$', [], set()) == '$a\n\nb$'          # no formula across a blank line
    assert '<mfrac>' in site.mathml('\\frac{1}{2}', True) and 'display="block"' in site.mathml('x', True)


def test_maths_the_converter_lacks(site):
    "aligned rows, \\arg, \\big\\|, \\_ and a backslash at a line's end become MathML with no TeX left; what cannot, fails."
    rows = site.mathml('\\begin{aligned}a &= b && \\text{(x)}\\\\ &\\ge c\\end{aligned}', True)
    assert rows.count('<mtr>') == 2 and '&' not in rows.replace('&#x', '')
    for tex in ['\\arg\\max_t x', '\\big\\|x\\big\\|_2^2', '\\text{min\\_visible} + a\\_b', 'a,\\ \\\n b', '\\|x\\|', '\\& x']:
        out = site.mathml(tex, False)
        assert not TEX_LEFT.search(' '.join(re.findall(r'>([^<>]*)<', out)).replace('&#x', '').replace('&amp;', '')), (tex, out)
    assert '>arg<' in site.mathml('\\arg\\min_t x', False) and '>min_visible<' in site.mathml('\\text{min\\_visible}', False)
    assert '<mi>log</mi><mspace' in site.mathml('\\log p', False) and '<msub><mi>log</mi><mn>2</mn></msub>' in site.mathml('\\log_2 x', False)
    for bad in ['a & b', '\\unknowncommand x']:
        with pytest.raises(ValueError, match='TeX as text'): site.mathml(bad, True)


def test_printed_tables_become_tables(site):
    "A printed markdown table (two of them back to back, text around) is shown as markdown tables; a | in a cell's text stays text."
    text = ('before\n| a | b |\n|---|---|\n| `x|y` | tiny|paper |\n| c | d |\n|---|---|\n| 1 | 2 |\nafter\n')
    parts = site._tables_shown(dict(output_type='stream', name='stdout', text=text))
    assert [p['output_type'] for p in parts] == ['stream', 'display_data', 'display_data', 'stream']
    assert parts[0]['text'] == 'before\n' and parts[-1]['text'] == 'after\n'
    assert parts[1]['data']['text/markdown'] == '| a | b |\n|---|---|\n| `x\\|y` | tiny\\|paper |\n'
    assert parts[2]['data']['text/markdown'].startswith('| c | d |')
    stderr = dict(output_type='stream', name='stderr', text='| a |\n|---|\n')
    assert site._tables_shown(stderr) == [stderr]


def _nb(*cells) -> str:
    "A notebook's JSON from (kind, source[, outputs]) tuples."
    def cell(i, kind, src, outputs=()):
        c = dict(cell_type=kind, id=f'cell{i}', metadata={}, source=src)
        return dict(c, execution_count=None, outputs=list(outputs)) if kind == 'code' else c
    return json.dumps(dict(cells=[cell(i, *c) for i, c in enumerate(cells)], metadata={}, nbformat=4, nbformat_minor=5))


def test_build_small_course(site, tmp_path):
    "A two-track map, hidden and exported cells, outputs, maths, links and a picture, checked in the HTML (no browser)."
    import base64, io
    from PIL import Image
    nbs = tmp_path/'nbs'
    (nbs/'images').mkdir(parents=True)
    png = io.BytesIO(); Image.new('RGB', (4, 3), 'red').save(png, format='PNG')
    (nbs/'images'/'p.png').write_bytes(png.getvalue())
    (nbs/'index.ipynb').write_text(_nb(('markdown', '# Home\n\n![a picture](images/p.png)\n\n### Track A\n\n'
                                                  '| notebook | topic |\n|---|---|\n| `02_b` | b |\n\n### Track B\n\n'
                                                  '| `01_a` | a |\n')))
    shown = dict(output_type='display_data', metadata={}, data={'image/png': base64.b64encode(png.getvalue()).decode()})
    stream = lambda text: dict(output_type='stream', name='stdout', text=text)
    (nbs/'01_a.ipynb').write_text(_nb(
        ('markdown', '# A\n\nBack [home](index.ipynb#Home), on to `02_b`; $\\alpha$, [gone](missing.ipynb).'),
        ('code', '#| hide\nsecret = 1'),
        ('code', '#| export\ndef f(): pass', [stream(['one\n']), stream('two\n'), shown]),     # .ipynb: lists of lines
        ('code', "#| echo: false\nprint('x')", [stream('only the output\n')])))
    (nbs/'02_b.ipynb').write_text(_nb(('markdown', '# B\n\n$$\\begin{aligned}a &= b\\end{aligned}$$ but $x & y$'),
                                      ('code', 'print(table)', [stream('| a | b |\n|---|---|\n| 1 | 2 |\n')])))
    (nbs/'03_c.ipynb').write_text(_nb(('markdown', '# C, not in the map')))
    rep = site.build(tmp_path/'site', nbs=nbs)
    assert sorted(p[:46] for p in rep.problems) == ['01_a.ipynb: broken link missing.ipynb',
                                                   '02_b.ipynb: cannot convert the formula $x & y$']   # TeX left: an error
    assert '03_c' in rep.warnings[0]
    b = (rep.out/'02_b.html').read_text()
    assert '<mtable' in b and '<td>1</td>' in b and '|---|' not in b                  # aligned rows; the printed table
    a, home = (rep.out/'01_a.html').read_text(), (rep.out/'index.html').read_text()
    assert 'secret' not in a and '#| export' not in a and 'print' not in a and '<span class="k">def</span>' in a
    assert '<pre>one\ntwo\n</pre>' in a and 'data:image/png;base64,' in a and 'only the output' in a
    assert '<math' in a and '$' not in a and 'href="index.html#Home"' in a and 'href="02_b.html"><code>02_b</code>' in a
    assert (rep.out/'images'/'p.png').read_bytes() == png.getvalue() and 'src="images/p.png"' in home
    side = re.findall(r'<li><a href="(\w+)\.html"', home)
    assert side == ['02_b', '01_a', '03_c'] and 'Not in the notebook map' in home
    assert not re.search(r'(src|href)="(https?:)?//', home + a)                # nothing loaded from elsewhere


def _latex_pages() -> set:
    "The notebooks whose markdown has a $...$ formula outside code (read here, independently of the builder)."
    out = set()
    for p in NBS.glob('*.ipynb'):
        md = '\n'.join(''.join(c['source']) for c in json.loads(p.read_text())['cells'] if c['cell_type'] == 'markdown')
        md = re.sub(r'`[^`]*`', '', re.sub(r'```.*?```', '', md, flags=re.S))
        if re.search(r'\$[^$\n]+\$', md): out.add(f'{p.stem}.html')
    return out


_PAGE_JS = """() => {
  const main = document.querySelector('main').cloneNode(true);
  main.querySelectorAll('pre, code, math').forEach(e => e.remove());
  return {
    imgs: [...document.images].map(i => ({src: i.getAttribute('src').slice(0, 60), ok: i.complete && i.naturalWidth > 0})),
    links: [...document.querySelectorAll('a[href]')].map(a => a.href),
    ids: [...document.querySelectorAll('[id]')].map(e => e.id),
    sidebar: [...document.querySelectorAll('nav.sidebar li a')].map(a => a.getAttribute('href')),
    next: [...document.querySelectorAll('footer.pager a[rel="next"]')].map(a => a.getAttribute('href')),
    mathTexts: [...document.querySelectorAll('main math')].map(m =>           // a backslash, or an & as an identifier
      m.textContent.includes('\\\\') || [...m.querySelectorAll('mi')].some(e => e.textContent.includes('&')) ? m.textContent : ''),
    mathRows: [...document.querySelectorAll('main math mtable')].map(t => t.querySelectorAll('mtr').length),
    width: [document.documentElement.scrollWidth, window.innerWidth],
    shrunk: [...document.querySelectorAll('main .output_area img')]                 // an output picture drawn below its size
      .filter(i => i.naturalWidth && i.getBoundingClientRect().width < i.naturalWidth - 1)
      .map(i => `${i.naturalWidth} px shown at ${Math.round(i.getBoundingClientRect().width)} px`),
    clipped: [...document.querySelectorAll('main pre')]                             // wide code or text must scroll
      .filter(p => p.scrollWidth > p.clientWidth + 1 && !['auto', 'scroll'].includes(getComputedStyle(p).overflowX))
      .map(p => p.textContent.slice(0, 60)),
    shown: (() => { const m = document.querySelector('main').cloneNode(true);     // what a reader sees, but the code
                    m.querySelectorAll('.input_area, math, :not(pre) > code').forEach(e => e.remove()); return m.innerText; })(),
    current: [...document.querySelectorAll('nav.sidebar a[aria-current="page"]')].map(a => a.getAttribute('href')),
    maths: [...document.querySelectorAll('main math')].filter(m => m instanceof MathMLElement
                                                              && m.getBoundingClientRect().width > 0).length,
    text: main.innerText,
  };
}"""


@needs_chromium
def test_site_in_browser(site, tmp_path):
    from playwright.sync_api import sync_playwright
    rep = site.built_or_build(tmp_path/'site')         # the docs phase's _site/ when it is of these sources
    assert not rep.problems, '\n'.join(rep.problems)
    root = rep.out.resolve()
    stems = sorted(p.stem for p in NBS.glob('*.ipynb'))
    assert sorted(rep.pages) == [f'{s}.html' for s in stems]
    latex_pages = _latex_pages()
    assert {'00_bound.html', '05_objectives.html'} <= latex_pages             # the check below has pages to check
    index_md = ''.join(''.join(c['source']) for c in json.loads((NBS/'index.ipynb').read_text())['cells'])
    shots = Path(os.environ.get('CRVAE_SCREENSHOTS') or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)

    problems, outside, anchors, ids, n_imgs = [], [], [], {}, 0
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            ctx = browser.new_context(viewport={'width': 1280, 'height': 900})
            def route(r):                          # only the site's own files; anything else is aborted and reported
                if r.request.url.startswith('file://'): r.continue_()
                else: outside.append(r.request.url); r.abort()
            ctx.route('**/*', route)
            page = ctx.new_page()
            page.on('requestfailed', lambda r: problems.append(f'request failed: {r.url[:100]} ({r.failure})'))
            page.on('pageerror', lambda e: problems.append(f'script error: {e}'))
            for name in sorted(rep.pages):
                page.goto((root/name).as_uri(), wait_until='load')
                info = page.evaluate(_PAGE_JS)
                ids[name] = set(info['ids'])
                n_imgs += len(info['imgs'])
                problems += [f'{name}: picture did not load: {i["src"]}' for i in info['imgs'] if not i['ok']]
                for url in info['links']:
                    if not url.startswith('file://'): continue
                    parts = urlsplit(url)
                    target = Path(unquote(parts.path))
                    if not target.is_relative_to(root) or not target.is_file():
                        problems.append(f'{name}: broken link {url}')
                    elif parts.fragment: anchors.append((name, target.relative_to(root).as_posix(), parts.fragment))
                # the sidebar: every notebook once, the notebook map's order, this page marked
                side = [h.removesuffix('.html') for h in info['sidebar']]
                if sorted(side) != [s for s in stems if s != 'index']:
                    problems.append(f'{name}: the sidebar lists {side}, not every notebook once')
                row = lambda s: re.search(rf'^\|\s*`{re.escape(s)}`\s*\|', index_md, re.M)     # its row in a map table
                mapped = [s for s in side if row(s)]
                if mapped != sorted(mapped, key=lambda s: row(s).start()):
                    problems.append(f'{name}: the sidebar is not in the order of the notebook map: {mapped}')
                if name != 'index.html' and info['current'] != [name]:
                    problems.append(f'{name}: the sidebar marks {info["current"]} as the current page')
                # the maths: MathML that Chromium lays out, and no TeX left over in the prose
                if name in latex_pages and not info['maths']:
                    problems.append(f'{name}: its markdown has LaTeX but the page shows no rendered <math>')
                leftover = re.findall(r'.{0,30}(?:\$\$|\$\\[a-zA-Z]).{0,30}', info['text'])
                problems += [f'{name}: raw TeX left in the text: {t!r}' for t in leftover]
                problems += [f'{name}: TeX left in rendered maths: {t[:80]!r}' for t in info['mathTexts'] if t]
                # tables, width and the pager
                problems += [f'{name}: a markdown table shown as text: {info["shown"][max(0, m.start() - 60):m.end()].strip()!r}'
                             for m in RAW_TABLE.finditer(info['shown'])]
                problems += [f'{name}: an output picture is shrunk, its text below the size it was drawn at: {w}' for w in info['shrunk']]
                problems += [f'{name}: a wide code or text block is cut off instead of scrolling: {t!r}' for t in info['clipped']]
                if info['width'][0] > info['width'][1]:
                    problems.append(f'{name}: the page is {info["width"][0]} px wide in a {info["width"][1]} px window')
                order = ['index'] + side
                at = order.index(name.removesuffix('.html'))
                want = [f'{order[at + 1]}.html'] if at + 1 < len(order) else []
                if info['next'] != want: problems.append(f'{name}: the pager goes on to {info["next"]}, the course to {want}')
                if name == '00_bound.html' and not any(n >= 4 for n in info['mathRows']):
                    problems.append(f'00_bound.html: the step-by-step bound is not shown as aligned rows ({info["mathRows"]})')
                stem = name.removesuffix('.html')
                if stem in SHOTS:
                    if stem == '05_objectives':                          # a displayed equation in view
                        page.locator('main math[display="block"]').first.scroll_into_view_if_needed()
                    if stem == '00_bound':                               # the bound's aligned rows, mid-screen
                        page.locator('main math mtable').first.evaluate('e => e.closest("math").scrollIntoView({block: "center"})')
                    if stem == 'index':                                  # where to start, and the course map
                        page.locator('main h2', has_text='The course: notebook map').first.evaluate('e => e.scrollIntoView()')
                    if stem == '13_fig_blocks':                          # the shipped models' figures, first on the page
                        page.locator('main h2', has_text='What the shipped models draw').first.evaluate('e => e.scrollIntoView()')
                    if stem == '08c_training':                          # the comparison's learning curves, trained models
                        page.locator('main img[src*="learning-curves"]').first.evaluate('e => e.scrollIntoView({block: "center"})')
                    tables = page.locator('main .output_markdown table')
                    if stem == '91_differences' and tables.count():      # the learning curves of the shipped runs, a table below
                        page.locator('main h2', has_text='crVAE Table 1').first.evaluate('e => e.scrollIntoView()')
                    page.screenshot(path=str(shots/SHOTS[stem]))
        finally:
            browser.close()
    for page_name, target, frag in anchors:                  # a browser tries the fragment as written, then decoded
        if not {frag, unquote(frag)} & ids.get(target, set()):
            problems.append(f'{page_name}: link to {target}#{frag}, no such anchor')
    assert not outside, f'requests left the machine: {outside[:5]}'
    assert not problems, '\n'.join(problems[:30])
    assert n_imgs >= 1 and 'index.html' in ids                                 # the home page's picture was checked
    print(f'site: {len(rep.pages)} pages built in {rep.seconds:.1f} s; screenshots in {shots}')
