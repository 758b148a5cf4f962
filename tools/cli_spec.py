"""Dump the `crvae` command line as JSON: for every command (and `data`'s datasets), its parser's actions and its --help.

    python tools/cli_spec.py > before.json; (refactor); python tools/cli_spec.py > after.json; diff before.json after.json

A refactor of the command machinery must leave this dump unchanged (or change only what it means to)."""
import argparse, json, os, sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # this checkout's crvae

os.environ['COLUMNS'] = '120'                      # argparse wraps help to the terminal: fix the width


def _default(v):
    if v is argparse.SUPPRESS: return '==SUPPRESS=='
    return v if isinstance(v, (str, int, float, bool, type(None), list)) else repr(v)


def _action(a:argparse.Action) -> dict:
    return dict(option_strings=a.option_strings, dest=a.dest, default=_default(a.default),
                type=getattr(a.type, '__name__', repr(a.type)) if a.type is not None else None, nargs=a.nargs,
                action=type(a).__name__, required=a.required, help=a.help, metavar=a.metavar,
                choices=sorted(a.choices) if isinstance(a.choices, dict) else (list(a.choices) if a.choices else None),
                const=_default(a.const))


def _parser(p:argparse.ArgumentParser) -> dict:
    d = dict(prog=p.prog, description=p.description, usage=p.format_usage(), help=p.format_help(),
             actions=[_action(a) for a in p._actions],
             exclusive=[sorted(a.dest for a in g._group_actions) for g in p._mutually_exclusive_groups])
    subs = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
    if subs: d['subcommands'] = {k: _parser(v) for k, v in sorted(subs[0].choices.items())}
    return d


def spec() -> dict:
    from crvae.core import COMMAND_TABLE, build_parser
    top = build_parser([])
    out = dict(top=dict(help=top.format_help(), actions=[_action(a) for a in top._actions]), commands={})
    for name in sorted(COMMAND_TABLE):
        p = build_parser([name])
        sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
        out['commands'][name] = _parser(sub.choices[name])
    return out


if __name__ == '__main__':
    json.dump(spec(), sys.stdout, indent=1, sort_keys=True); print()
