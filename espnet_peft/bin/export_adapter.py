"""Export a trained adapter as a shareable safetensors file with a JSON header.

    python -m espnet_peft.bin.export_adapter --exp exp/child_ssvd_o --out child_ssvd_o.safetensors
    python -m espnet_peft.bin.export_adapter --exp exp/x --checkpoint valid.acc.best.pth --out x.safetensors

Reads the experiment's adapter checkpoint (default ``valid.acc.ave.pth``, else ``valid.acc.best.pth``),
its training command (``command.txt``), the id of the foundation model it was trained on
(``foundation_id``) and, for a checkpoint written before adapter states recorded their config, its
frozen ``peft_config.yaml`` (such a checkpoint cannot be verified: ``--trust_unverified``); writes ``--out`` (``espnet_peft.adapter_file``): the tensors as
safetensors, the header as metadata. Prints the header. Refused: a diverged run, a checkpoint outside
``--exp``, a checkpoint trained with another PEFT config than the experiment's, and every adapter
``load_adapter`` refuses (non-finite values, no fingerprint table or config record).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

from ..adapter_file import load_adapter, save_adapter
from ..config import PeftConfig
from ..errors import PeftError
from ..markers import DIVERGED
from ..provenance import config_hash


def export(exp: Path, out: Path, checkpoint: str = "", trust_unverified: bool = False) -> dict:
    if (exp / DIVERGED).is_file():
        raise PeftError(f"the training in {exp} stopped as diverged ({exp / DIVERGED}): its adapter is not exported")
    names = [checkpoint] if checkpoint else ["valid.acc.ave.pth", "valid.acc.best.pth"]
    outside = [n for n in names if (exp / n).resolve().parent != exp.resolve()]
    if outside:
        raise PeftError(f"--checkpoint {outside[0]} is not a checkpoint of {exp} (a file name in it, e.g. "
                        f"valid.acc.best.pth)")
    ckpt = next((exp / n for n in names if (exp / n).is_file()), None)
    if ckpt is None:
        raise PeftError(f"no adapter checkpoint in {exp} (looked for {', '.join(names)}; run stage 10)")
    state, header = load_adapter(ckpt, trust_unverified=trust_unverified)
    frozen = exp / "peft_config.yaml"
    if header.get("config_sha256") and frozen.is_file():
        own = config_hash(PeftConfig.from_any(str(frozen)))
        if own != header["config_sha256"]:
            raise PeftError(f"{ckpt} was trained with another PEFT config than {exp}'s ({frozen}): a checkpoint of "
                            f"another experiment?")
    extra = {"checkpoint": ckpt.name}
    for key, file in (("command", "command.txt"), ("foundation_id", "foundation_id")):
        if (exp / file).is_file():
            extra[key] = (exp / file).read_text().strip()
    if "config" not in header and (exp / "peft_config.yaml").is_file():
        extra["config"] = yaml.safe_load((exp / "peft_config.yaml").read_text())
        extra["method"] = extra["config"].get("method")
    if not header.get("modules") and (exp / "peft_plan.json").is_file():  # (the plan the training wrote)
        plan = json.loads((exp / "peft_plan.json").read_text())
        extra["modules"] = {r["name"]: r.get("hyper", {}) for r in plan.get("rows", [])}
        extra["trainable_params"] = plan.get("total")
    return save_adapter(out, state, extra)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--exp", required=True, type=Path, help="the experiment directory (exp/<tag>)")
    ap.add_argument("--out", required=True, type=Path, help="the adapter file to write (.safetensors)")
    ap.add_argument("--checkpoint", default="", help="the checkpoint in --exp (default: valid.acc.ave.pth)")
    ap.add_argument("--trust_unverified", action="store_true",
                    help="export a checkpoint without a config record or base-model fingerprint table (written "
                         "by an older version): those checks are skipped, with a warning naming them")
    args = ap.parse_args(argv)
    try:
        header = export(args.exp, args.out, args.checkpoint, args.trust_unverified)
    except PeftError as e:
        print(f"espnet_peft.bin.export_adapter: error: {e}", file=sys.stderr)
        return 1
    print(json.dumps({k: v for k, v in header.items() if k != "modules"}, indent=1, default=str))
    print(f"export_adapter: {args.out} ({len(header.get('modules') or {})} modules)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
