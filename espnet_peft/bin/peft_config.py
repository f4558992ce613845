#!/usr/bin/env python3
"""Check a PEFT config, write a copy with some settings changed, or list every method's options.

    python -m espnet_peft.bin.peft_config conf/peft/lora.yaml                      # check it
    python -m espnet_peft.bin.peft_config conf/peft/lora.yaml out.yaml --set budget=2%
    python -m espnet_peft.bin.peft_config conf/peft/ssvd_o.yaml out.yaml --set allocation.inner=0.25
    python -m espnet_peft.bin.peft_config --options                                # the options table

``--set KEY=VALUE`` (repeatable; the value is read as YAML, ``a.b`` sets a nested key): setting a
budget drops the explicit hyperparameters (every registered method's keys and aliases), setting
a hyperparameter drops the budget. The copy is checked like any config before it is written.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List

import yaml

from ..config import PeftConfig, read_config, split_setting, with_settings
from ..errors import PeftError
from ..methods import REGISTRY


def _value(v) -> str:
    return "null" if v is None else str(v).lower() if isinstance(v, bool) else str(v)


def options_table() -> str:
    """Markdown: every method's hyperparameters, then every option (one row per declaration,
    shared declarations listing all their methods)."""
    lines = ["| method | hyperparameters (aliases) |", "|---|---|"]
    for name, m in REGISTRY.items():
        keys = ", ".join(f"`{k}`" + "".join(f" (`{a}`)" for a, t in m.aliases.items() if t == k)
                         for k in m.hyper_keys)
        lines.append(f"| `{name}` | {keys or '-'} |")
    rows: List[list] = []
    for name, m in REGISTRY.items():
        for o in m.options:
            row = next((r for r in rows if r[0] is o), None)
            if row is None:
                rows.append([o, [name]])
            else:
                row[1].append(name)
    lines += ["", "| methods | option | default | values | what it does |", "|---|---|---|---|---|"]
    lines += [f"| {', '.join(f'`{n}`' for n in names)} | `{o.name}` | `{_value(o.default)}` | {o.kind.text} | "
              f"{o.doc}{f' (only with `{o.when[0]}: {_value(o.when[1][0])}`)' if o.when else ''} |"
              for o, names in rows]
    return "\n".join(lines) + "\n"


def get_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config", nargs="?", type=Path, help="a PEFT config (YAML or JSON)")
    ap.add_argument("out", nargs="?", type=Path, help="where to write the changed copy (YAML)")
    ap.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                    help="a setting of the copy (repeatable)")
    ap.add_argument("--options", action="store_true", help="print the options table of every method (Markdown)")
    return ap


def main(cmd=None) -> int:
    ap = get_parser()
    args = ap.parse_args(cmd)
    if args.options:
        print(options_table(), end="")
        return 0
    if args.config is None or (args.settings and args.out is None):
        ap.error("give a config to check, or a config, an output file and --set KEY=VALUE")
    try:
        data = with_settings(read_config(args.config), dict(split_setting(s) for s in args.settings))
        PeftConfig.from_dict(data)
    except PeftError as e:
        print(f"espnet_peft.bin.peft_config: error: {args.config}: {e}", file=sys.stderr)
        return 2
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
