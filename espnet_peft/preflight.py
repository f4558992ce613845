"""What is checked before compute is spent: the data of a training or decoding run (files, readable
audio at the model frontend's sample rate, one channel, transcripts the tokenizer can spell) and, on
resume, that the PEFT config is the one frozen in the output directory."""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence

from .config import PeftConfig, read_config
from .data import DataError, read_table, validate_data_triplets
from .errors import PeftError
from .loading import load_yaml
from .markers import FROZEN_PEFT_CONFIG


def config_differences(old: Dict[str, Any], new: Dict[str, Any]) -> List[str]:
    keys = sorted(set(old) | set(new))
    return [f"{k}: {old.get(k, '(unset)')!r} -> {new.get(k, '(unset)')!r}" for k in keys if old.get(k) != new.get(k)]


def check_resume_config(output_dir: os.PathLike, peft_config: Any) -> None:
    """Resuming ``output_dir`` with another PEFT config than the one frozen there is refused."""
    out = Path(output_dir)
    frozen = out / FROZEN_PEFT_CONFIG
    if not ((out / "checkpoint.pth").is_file() and frozen.is_file()):
        return
    old = read_config(frozen)  # a key given twice there is an error, as in any PEFT config file
    new = PeftConfig.from_any(peft_config).to_dict()
    diff = config_differences(old, new)
    if diff:
        raise PeftError(f"{out} holds a run trained with another PEFT config ({frozen}): {'; '.join(diff)}. Resuming "
                        f"would load its checkpoint into another model; move {out} away or train into another "
                        f"directory (recipes: --tag), or resume with --peft_config {frozen}")


def expected_sample_rate(args: argparse.Namespace) -> Optional[int]:
    """The sample rate the model's frontend assumes (None for frontends without one)."""
    if getattr(args, "frontend", "default") not in (None, "default"):
        return None
    fs = (getattr(args, "frontend_conf", None) or {}).get("fs", 16000)
    if isinstance(fs, str):
        import humanfriendly

        fs = humanfriendly.parse_size(fs)
    return int(fs)


def untokenizable_text(text_files: Iterable[str], args: argparse.Namespace, max_report: int = 5) -> List[str]:
    """Non-ASCII characters of the transcripts that the model's tokenizer maps to <unk>, per file."""
    token_type = getattr(args, "token_type", None)
    known = None
    if token_type == "bpe" and getattr(args, "bpemodel", None) and Path(args.bpemodel).is_file():
        import sentencepiece as spm

        sp = spm.SentencePieceProcessor(model_file=str(args.bpemodel))

        def known(ch: str) -> bool:
            return sp.unk_id() not in sp.encode(ch)
    elif token_type == "char" and isinstance(getattr(args, "token_list", None), list):
        tokens = set(args.token_list)

        def known(ch: str) -> bool:
            return ch in tokens
    if known is None:
        return []
    out = []
    for path in text_files:
        table = read_table(path)
        used = {c for v in table.values() for c in v if ord(c) > 127 and not c.isspace()}
        unknown = sorted(c for c in used if not known(c))
        if unknown:
            utts = sorted(k for k, v in table.items() if any(c in v for c in unknown))
            out.append(f"{path}: {len(utts)} of {len(table)} transcript(s) contain characters the tokenizer does not "
                       f"know ({' '.join(unknown[:20])}), e.g. {utts[:max_report]}; they train as <unk>")
    return out



def check_inference_data(triplets: Sequence, train_config: Optional[str]) -> None:
    """``espnet_peft.bin.*_inference``: refuse audio at another sample rate than the model's frontend
    or with more than one channel, before the model is loaded (stock ESPnet would decode it at the
    wrong rate)."""
    if not triplets or not train_config or not Path(train_config).is_file():
        return
    fs = expected_sample_rate(argparse.Namespace(**load_yaml(train_config)))
    sound = [t for t in triplets if (t[2] if isinstance(t, (tuple, list)) else str(t).split(",")[2]) == "sound"]
    try:
        validate_data_triplets(sound, sample_rate=fs, mono=True)
    except DataError as e:
        raise SystemExit(f"espnet_peft: error: {e}\n  (resample and down-mix to {fs} Hz mono first, "
                         f"e.g. local/format_data.py --fs {fs} SRC_DIR DST_DIR)") from None

