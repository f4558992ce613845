#!/usr/bin/env python3
"""Fetch a pretrained model into a recipe's foundation directory (stage 6 without --pretrain).

    fetch_foundation.py --source espnet/owsm_v3.1_ebf_base --out foundation     # model zoo, needs a network
    fetch_foundation.py --source /models/owsm_v3.1_ebf_base --out foundation    # an unpacked model directory
    fetch_foundation.py --source /models/owsm.zip --out foundation              # a packed model

A local source is a model-zoo layout (``meta.yaml`` naming the train config and model file, with
paths relative to its root) or a directory with ``config.yaml`` and one ``.pth``. The output is
``config.yaml`` (the tokenizer and normalisation-statistics paths rewritten into ``--out``),
``model.pth``, ``bpe.model``, ``tokens.txt`` and ``feats_stats.npz`` when the model has one; the
model is rebuilt from the config and the weights are loaded strictly to prove they match.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path

import yaml



def from_meta(root: Path):
    meta = yaml.safe_load((root / "meta.yaml").read_text())
    ymls = meta.get("yaml_files") or {}
    files = meta.get("files") or {}
    cfg = next((root / v for k, v in ymls.items() if k.endswith("train_config")), None)
    model = next((root / v for k, v in files.items() if k.endswith("model_file")), None)
    if cfg is None or model is None:
        raise SystemExit(f"fetch_foundation.py: {root}/meta.yaml names no *_train_config / *_model_file")
    return cfg, model


def locate(source: str, workdir: Path):
    """(config path, model path, root that relative config paths are resolved against)."""
    p = Path(source)
    if p.is_file() and p.suffix == ".zip":
        with zipfile.ZipFile(p) as z:
            z.extractall(workdir)
        p = workdir
    if p.is_dir():
        if (p / "meta.yaml").is_file():
            cfg, model = from_meta(p)
            return cfg, model, p
        pths = sorted(p.glob("*.pth"))
        if (p / "config.yaml").is_file() and len(pths) == 1:
            return p / "config.yaml", pths[0], p
        raise SystemExit(f"fetch_foundation.py: {p} is neither a model-zoo layout (meta.yaml) nor a directory "
                         f"with config.yaml and one .pth")
    if p.exists():
        raise SystemExit(f"fetch_foundation.py: cannot use {p}")
    try:
        from espnet_model_zoo.downloader import ModelDownloader
    except ImportError:
        raise SystemExit(f"fetch_foundation.py: {source!r} is not a local path, and downloading a model-zoo tag "
                         f"needs espnet_model_zoo (pip install espnet_model_zoo) and a network") from None
    d = ModelDownloader(str(workdir / "cache"))
    info = d.download_and_unpack(source)
    cfg = next(Path(v) for k, v in info.items() if k.endswith("train_config"))
    model = next(Path(v) for k, v in info.items() if k.endswith("model_file"))
    return cfg, model, Path.cwd()


def resolve(path: str, root: Path, cfg_dir: Path) -> Path:
    for base in (Path(), root, cfg_dir):
        q = base / path
        if q.is_file():
            return q
    raise SystemExit(f"fetch_foundation.py: the config refers to {path}, which is not found under {root}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", required=True)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--verify", type=lambda s: s.lower() == "true", default=True)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        cfg_path, model_path, root = locate(args.source, Path(tmp))
        cfg = yaml.safe_load(cfg_path.read_text())
        args.out.mkdir(parents=True, exist_ok=True)
        if cfg.get("bpemodel"):
            shutil.copy(resolve(cfg["bpemodel"], root, cfg_path.parent), args.out / "bpe.model")
            cfg["bpemodel"] = str(args.out / "bpe.model")
        stats = (cfg.get("normalize_conf") or {}).get("stats_file")
        if stats:
            shutil.copy(resolve(stats, root, cfg_path.parent), args.out / "feats_stats.npz")
            cfg["normalize_conf"]["stats_file"] = str(args.out / "feats_stats.npz")
        tokens = cfg.get("token_list")
        if isinstance(tokens, str):
            tokens = [l.rstrip("\n") for l in resolve(tokens, root, cfg_path.parent).read_text().splitlines()]
            cfg["token_list"] = tokens
        (args.out / "tokens.txt").write_text("\n".join(tokens) + "\n")
        shutil.copy(model_path, args.out / "model.pth")
        (args.out / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True))
    if args.verify:
        from espnet_peft.tasks import stock_task, task_of
        from espnet_peft.espnet_task import load_pretrained_weights

        import argparse as _a

        task = stock_task(task_of(cfg).__name__)
        model = task.build_model(_a.Namespace(**cfg))
        load_pretrained_weights(model, args.out / "model.pth")
        n = sum(p.numel() for p in model.parameters())
        print(f"fetch_foundation.py: {args.out}: {n:,} parameters, weights match the config")
    return 0


if __name__ == "__main__":
    sys.exit(main())
