"""Turns a sweep's finished run into its record (``sweep_records.py``): a dev run's score (the dev set
decoded, or ESPnet's best validation accuracy) or a seed's test decoding (its summary and every
decoding's per-utterance errors), and the sets' utterances with the base model's errors
(``data.json``). Reads the recipe's experiment layout under ``--expdir``."""
from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Dict, List, Optional

import yaml

from espnet_peft.markers import DIVERGED
from espnet_peft.scoring import utterance_errors_files
from sweep_records import DECODINGS, errors_block, set_block


def merged_dir(expdir: Path, tag: str, alpha: float) -> Path:
    return expdir / tag / ("merged" if alpha == 1.0 else f"merged_alpha{alpha:g}")


def summary_path(expdir: Path, tag: str, alpha: float) -> Path:
    return merged_dir(expdir, tag, alpha) / "summary.json"


def best_valid_acc(exp: Path):
    """ESPnet's best validation accuracy over the epochs of a training (its logs, a resumed run's
    earlier ones included); None when no epoch has finished."""
    best = None
    for log in sorted(exp.glob("train.log*")):
        for line in log.read_text(errors="replace").splitlines():
            if "epoch results:" not in line or "[valid]" not in line:
                continue
            m = re.search(r"(?:^|[\s,])acc=([0-9.eE+-]+)", line.split("[valid]", 1)[1].split("[", 1)[0])
            if m:
                best = float(m.group(1)) if best is None else max(best, float(m.group(1)))
    return best


class Recorder:
    """Writes the records of one sweep's finished runs into ``store``; ``runs``: their identities
    (RunIdentities); ``notes``: where problems with a decoding are told."""

    def __init__(self, args, proto, store, runs, dev_label: str, commit: str, notes: List[str]):
        self.args, self.metric, self.store, self.runs = args, proto.selection, store, runs
        self.forgetting = proto.forgetting
        self.dev_label, self.commit, self.notes = dev_label, commit, notes
        self.utts: Dict[tuple, object] = {}

    def utt(self, hyp_dir: Path, x: str, unit: str = "word"):
        """Per-utterance errors (words, or characters) of a decoding of set x (None without its
        reference or hypotheses)."""
        key = (str(hyp_dir), x, unit)
        if key not in self.utts:
            raw = self.args.dumpdir / "raw" / x
            ref = raw / "text.plain" if (raw / "text.plain").is_file() else raw / "text"
            hyp = hyp_dir / x / "text"
            self.utts[key] = None
            if ref.is_file() and hyp.is_file():
                try:
                    self.utts[key] = utterance_errors_files(ref, hyp, raw / "utt2spk", unit)
                except (ValueError, OSError) as e:
                    self.notes.append(f"{hyp}: {e}")
        return self.utts[key]

    def errors(self, hyp_dir: Path, x: str):
        """The record block of a decoding of set x (None without it)."""
        u = self.utt(hyp_dir, x)
        return None if u is None else errors_block(u, self.utt(hyp_dir, x, "char"))

    def record_data(self, sets) -> None:
        """data.json: the sets' utterances and the base model's errors, for every decoding."""
        data = self.store.load_data()
        did, fid = self.runs.data_id, self.runs.foundation_id
        if data.get("data_id") != did or data.get("foundation_id") != fid:
            data = {"data_id": did, "foundation_id": fid, "sets": {}, "base": {}}
        for dec, sub in DECODINGS.items():
            base = self.args.expdir / ("base_decode" if dec == "lm" else f"base_{sub}")
            for x in sets:
                u = self.utt(base, x)
                if u is None:
                    continue
                data["sets"].setdefault(x, set_block(u, self.utt(base, x, "char")))
                data["base"].setdefault(dec, {})[x] = errors_block(u, self.utt(base, x, "char"))
        self.store.save_data(data)

    def write(self, run, seconds: Optional[float] = None) -> None:
        """The record of a finished run (``run``: a sweep_runs.Run), when it has its score or summary."""
        c, lr, s, t, kind, alpha = run
        exp = self.args.expdir / t
        wall = json.loads((exp / "train_wall.json").read_text()) if (exp / "train_wall.json").is_file() else {}
        rec = {"kind": kind, "tag": t, "cell": c.name, "lr": lr, "seed": s, "alpha": alpha,
               **self.runs.identity(c, s), "code_commit": self.commit,
               "train_wall_seconds": wall.get("train_wall_seconds"),
               "job_seconds": None if seconds is None else round(seconds, 1),
               "written": time.strftime("%Y-%m-%d %H:%M:%S")}
        done = self.dev_record(rec, exp) if kind == "dev" else self.test_record(rec, exp, alpha)
        if done:
            self.store.write(rec)

    def diverged(self, tag: str) -> bool:
        """Whether the experiment stopped on non-finite values (its marker)."""
        return (self.args.expdir / tag / DIVERGED).is_file()

    def dev_record(self, rec: dict, exp: Path) -> bool:
        """Fills a dev record: the dev score (the selection metric of the merged model's decoding, or
        the best validation accuracy), or the divergence; False while the run has no score."""
        a, m = self.args, self.metric
        rec.update(metric=m.name, dev_set=self.dev_label, diverged=(exp / DIVERGED).is_file(), dev_score=None)
        if rec["diverged"]:
            return True
        if m.source != "decode":
            rec["dev_score"] = best_valid_acc(exp)
            return rec["dev_score"] is not None
        decoded = merged_dir(a.expdir, rec["tag"], 1.0) / "decode"
        p = decoded / a.dev_set / "result.json"
        if not p.is_file():
            return False
        rec["dev_score"] = json.loads(p.read_text())[m.field]
        if self.forgetting:  # selection.forgetting: the source dev set, adapted against the base model
            x = self.forgetting["set"]
            adapted, base = decoded / x / "result.json", a.expdir / "base_decode" / x / "result.json"
            if not (adapted.is_file() and base.is_file()):
                return False
            rec["forgetting_set"] = x
            rec["dev_forgetting"] = m.worse_by(json.loads(adapted.read_text())[m.field],
                                               json.loads(base.read_text())[m.field])
        block = self.errors(decoded, a.dev_set)
        rec["utterances"] = {"lm": {a.dev_set: block}} if block is not None else {}
        self.record_data([a.dev_set])
        return True

    def test_record(self, rec: dict, exp: Path, alpha: float) -> bool:
        """Fills a test record: the run's summary, every decoding's per-utterance errors and the checks
        of the rate and seed it trained with; False while it has no summary."""
        p = summary_path(self.args.expdir, rec["tag"], alpha)
        if not p.is_file():
            return False
        t, lr, s = rec["tag"], rec["lr"], rec["seed"]
        sm = json.loads(p.read_text())
        checks, cfg = [], exp / "config.yaml"
        trained_cfg = (yaml.safe_load(cfg.read_text()) or {}) if cfg.is_file() else {}
        tlr, tseed = (trained_cfg.get("optim_conf") or {}).get("lr"), trained_cfg.get("seed")
        if lr is None and tlr is not None:
            rec["lr"] = float(tlr)  # the train config's rate (the grid gives none)
        elif lr is not None and tlr is not None and abs(float(tlr) - lr) > 1e-9 * lr:
            checks.append(f"{t} trained with lr {tlr}, not {lr:g}")
        if s is not None and tseed is not None and int(tseed) != s:
            checks.append(f"{t} trained with seed {tseed}, not {s}")
        sets = list(sm.get("target_test_sets", [])) + list(sm.get("source_test_sets", []))
        merged = merged_dir(self.args.expdir, t, alpha)
        utterances = {}
        for dec, sub in DECODINGS.items():
            blocks = {x: self.errors(merged / sub, x) for x in sets}
            utterances[dec] = {x: b for x, b in blocks.items() if b is not None}
        rec.update(summary=sm, checks=checks, utterances=utterances)
        self.record_data(sets)
        return True
