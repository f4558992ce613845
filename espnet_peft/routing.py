"""Per-utterance adapter routing: several adapters on one model load, each utterance decoded with its own.

    router = Router(["child=exp/child/valid.acc.ave.pth", "accent=accent.safetensors"], "utt2adapter")
    router.check_keys(keys, where="data/mixed_test")  # every utterance names a known adapter (or base)
    router.attach(model)                               # an AdapterBank on the model; a foreign adapter is refused
    router.select(key)                                 # before decoding the utterance ``key``

``utt2adapter`` is Kaldi-style: ``<utterance id> <adapter name>`` per line, ``base`` for the frozen model.
Everything that can be wrong (a malformed spec, a missing file, an utterance without an adapter, an
unknown name, an adapter of another pretrained model) is a :class:`PeftError` naming it, raised before
any decoding. The decoders that use it: ``espnet_peft.bin.asr_inference`` / ``s2t_inference``
(``--adapter`` / ``--utt2adapter``) and the recipes' ``local/decode.py``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import torch.nn as nn

from . import data
from .errors import PeftError

BASE = "base"  #: the name that routes an utterance to the frozen model


def read_table(path: os.PathLike) -> Dict[str, str]:
    """``<key> <value>`` lines (Kaldi-style); a key given twice is an error naming the file and line."""
    try:
        return data.read_table(path)
    except data.DataError as e:
        raise PeftError(str(e)) from None


def parse_adapter_specs(specs: Iterable[str]) -> Dict[str, str]:
    """``NAME=CHECKPOINT`` specs as ``{name: path}``; each name once, ``base`` reserved, each file present."""
    paths: Dict[str, str] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise PeftError(f"--adapter wants NAME=CHECKPOINT, got {spec!r}")
        if name in paths or name == BASE:
            raise PeftError(f"adapter name {name!r} is given twice or reserved ({BASE!r} is the frozen model)")
        if not Path(path).is_file():
            raise PeftError(f"adapter {name}: {path} not found")
        paths[name] = path
    return paths


TRUST_FLAG = "--trust_unverified"


def split_routing_args(argv: Sequence[str]) -> Tuple[List[str], Optional[str], List[str]]:
    """``(adapter specs, utt2adapter, the other arguments)`` of a command line (``--adapter X``,
    ``--adapter=X``, ``--utt2adapter F``, ``--utt2adapter=F``), so that a stock ESPnet parser
    reads the rest (``--trust_unverified``, :class:`Router`'s ``trust_unverified``, is taken out too)."""
    specs, utt2adapter, rest = [], None, []
    it = iter(a for a in argv if a != TRUST_FLAG)
    for arg in it:
        opt, eq, value = arg.partition("=")
        if opt in ("--adapter", "--utt2adapter"):
            if not eq:
                value = next(it, None)
                if value is None:
                    raise PeftError(f"{opt} needs a value")
            if opt == "--adapter":
                specs.append(value)
            else:
                utt2adapter = value
        else:
            rest.append(arg)
    return specs, utt2adapter, rest


def data_keys(path: os.PathLike) -> List[str]:
    """The utterance ids of a Kaldi-style table (``wav.scp``, ``text``, a key file): each line's first field."""
    return list(read_table(path))


def add_adapter_file(bank, name: str, path: os.PathLike, trust_unverified: bool = False) -> None:
    """Adds the adapter file ``path`` (a ``.safetensors`` adapter file or a ``.pth`` state) to ``bank``
    as ``name``. A state written before adapter states recorded their config takes its header's, or
    its experiment's frozen ``peft_config.yaml``; a refusal names the file."""
    from .adapter_file import load_adapter

    state, header = load_adapter(path, trust_unverified=trust_unverified)
    frozen = Path(path).parent / "peft_config.yaml"
    config = header.get("config") if "config_sha256" not in header else None
    try:
        bank.add(name, state, config=config or (str(frozen) if frozen.is_file() else None))
    except PeftError as e:
        raise PeftError(f"{e} ({path})") from None


class Router:
    """Adapters by name (any method, any mix), the utterance -> adapter table, and once attached an
    :class:`~espnet_peft.bank.AdapterBank` on the model that ``select`` switches per utterance."""

    def __init__(self, adapters: Iterable[str], utt2adapter: Optional[os.PathLike], trust_unverified: bool = False):
        self.trust_unverified = trust_unverified  # adapters without digest, record or fingerprints load (warned)
        self.paths = parse_adapter_specs(adapters)
        if not self.paths:
            raise PeftError("routing needs at least one --adapter NAME=CHECKPOINT")
        if not utt2adapter:
            raise PeftError(f"--adapter needs --utt2adapter (utterance -> adapter name, {BASE} for none)")
        if not Path(utt2adapter).is_file():
            raise PeftError(f"utt2adapter {utt2adapter} not found")
        self.file = str(utt2adapter)
        self.utt2adapter = read_table(utt2adapter)
        self.bank = None
        self.active: Optional[str] = None

    def check_keys(self, keys: Iterable[str], where: str = "the data") -> None:
        """Every utterance has an adapter in utt2adapter, and a known one."""
        known = set(self.paths) | {BASE}
        for key in keys:
            name = self.utt2adapter.get(key)
            if name is None:
                raise PeftError(f"utterance {key} ({where}) has no adapter in {self.file}")
            if name not in known:
                raise PeftError(f"utterance {key}: adapter {name!r} (in {self.file}) is none of "
                                f"{', '.join(sorted(known))}")

    def attach(self, model: nn.Module) -> None:
        """An adapter bank on ``model`` holding every adapter; each is checked against the model's
        pretrained weights and its recorded config before anything changes."""
        from .bank import AdapterBank

        self.bank = AdapterBank(model)
        for name, path in self.paths.items():
            add_adapter_file(self.bank, name, path, trust_unverified=self.trust_unverified)

    def select(self, key: str) -> str:
        """Makes utterance ``key``'s adapter the active one (``base``: none); returns its name."""
        if self.bank is None:
            raise PeftError("Router.select before attach(model)")
        name = self.utt2adapter.get(key)
        if name is None:
            raise PeftError(f"utterance {key} has no adapter in {self.file}")
        if name != self.active:
            self.bank.activate(None if name == BASE else name)
            self.active = name
        return name
