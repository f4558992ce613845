"""Nothing lost, nothing stale: an adapter carries the PEFT config it was trained with (another config
is refused, naming what differs); non-finite numbers, budgets that round to nothing and keys given
twice are config errors before compute; unreadable model / adapter files are named; a failed write
(no space left, file too large) names the path and never leaves a truncated file under it.

No training: the experiment of the merge tests is built by hand from a tiny model (seconds)."""
from __future__ import annotations

import argparse
import copy
import errno
import logging
import os
from pathlib import Path

import pytest
import torch
import yaml

import espnet_peft
from espnet_peft import PeftError
from espnet_peft import checkpoint as ckpt
from espnet_peft.checkpoint import install_adapter_only_checkpointing
from espnet_peft.config import PeftConfig
from espnet_peft.loading import load_state_file

from conftest import TINY_ASR_CONFIG, make_asr_model, randomize_trainables

KEY = "peft_adapter_config"  # the record's entry in an adapter state
LORA = {"method": "lora", "target_modules": ["attn.linear_q", "attn.linear_v"], "r": 2, "alpha": 16}


def wrapped(cfg, seed: int = 0):
    model = make_asr_model(seed=seed)
    espnet_peft.apply_peft(model, cfg)
    return model


def write_yaml(path: Path, obj) -> Path:
    path.write_text(yaml.safe_dump(obj, sort_keys=False))
    return path


def experiment(root: Path, peft=LORA) -> Path:
    """A PEFT experiment as training leaves it (config.yaml, frozen peft_config.yaml, an adapter
    checkpoint), built without training: the adapter is a randomised state of the planned model."""
    from espnet_peft.espnet_task import experiment_config
    from espnet_peft.tasks.asr import PeftASRTask

    cfg = vars(PeftASRTask.get_parser().parse_args([]))
    cfg.update(copy.deepcopy(TINY_ASR_CONFIG))
    cfg.update(token_list=["<blank>", "<unk>"] + list("abcdefgh ") + ["<sos/eos>"], input_size=None)
    base = {k: v for k, v in cfg.items() if k not in ("peft_config", "pretrained_model", "pretrained_config")}
    pre, exp = root / "pre", root / "exp"
    pre.mkdir()
    exp.mkdir()
    torch.save(make_asr_model().state_dict(), pre / "model.pth")
    write_yaml(pre / "config.yaml", base)
    write_yaml(exp / "peft_config.yaml", peft)
    write_yaml(exp / "config.yaml", dict(base, peft_config=str(root / "user_peft.yaml"),
                                         pretrained_model=str(pre / "model.pth")))
    model = PeftASRTask.build_model(argparse.Namespace(**experiment_config(exp / "config.yaml")))
    randomize_trainables(model)
    torch.save(espnet_peft.peft_state_dict(model), exp / "adapter.pth")
    return exp


# =========================================================================== A: the adapter's config
def test_adapter_state_records_method_hyperparameters_and_config_hash(tmp_path):
    from espnet_peft.provenance import config_hash, decode

    model = wrapped(LORA)
    state = espnet_peft.peft_state_dict(model)
    assert state[KEY].dtype == torch.float64 and state[KEY].dim() == 1
    torch.save(state, tmp_path / "a.pth")
    loaded = torch.load(tmp_path / "a.pth", weights_only=True)  # plain tensors only
    rec = decode(loaded[KEY])
    assert rec["method"] == "lora"
    assert rec["config_sha256"] == config_hash(PeftConfig.from_dict(LORA))
    assert rec["config"]["alpha"] == 16 and rec["config"]["r"] == 2
    assert rec["modules"] == {r.name: {"r": 2} for r in espnet_peft.get_plan(model).rows}
    # the same config written another way (alias, 16.0, a default spelled out) is the same config
    same = wrapped({"method": "lora", "target_modules": ["attn.linear_q", "attn.linear_v"], "rank": 2,
                    "alpha": 16.0, "dropout": 0.0})
    espnet_peft.load_peft_state_dict(same, loaded)


@pytest.mark.parametrize("edit,named", [
    ({"alpha": 64}, r"alpha: 16 in the adapter, 64 in \S*peft\.yaml"),
    ({"r": 4}, r"r: 2 in the adapter, 4 in \S*peft\.yaml.*4 module\(s\) with other hyperparameters: "
               r"\S+linear_q r=2 in the adapter, r=4 here"),
    ({"alpha": None}, r"alpha: 16 in the adapter, not set in \S*peft\.yaml"),
    ({"method": "dora"}, r"method: lora in the adapter, dora in \S*peft\.yaml"),
    ({"target_modules": ["attn.linear_q"]}, r"target_modules: \[.*\] in the adapter.*2 module\(s\) adapted in the "
                                            r"adapter, not in this model's plan"),
], ids=["alpha", "rank", "alpha_removed", "method", "targets"])
def test_another_config_is_refused_naming_what_differs(tmp_path, edit, named):
    state = espnet_peft.peft_state_dict(wrapped(LORA))
    cfg = {k: v for k, v in dict(LORA, **edit).items() if v is not None}
    other = wrapped(PeftConfig.from_file(write_yaml(tmp_path / "peft.yaml", cfg)))
    with pytest.raises(PeftError, match=r"the adapter was trained with another PEFT config than \S*peft\.yaml: "
                                        + named):
        espnet_peft.load_peft_state_dict(other, state)


def test_checkpoint_hooks_refuse_another_config_also_after_averaging():
    """ESPnet's path (load_state_dict on a model with the adapter-only hooks): the record survives
    n-best averaging exactly, and another config is refused there too."""
    model = wrapped(LORA)
    install_adapter_only_checkpointing(model)
    state = model.state_dict()
    assert KEY in state
    averaged = {k: (v + v + v) / 3 if v.is_floating_point() else v for k, v in state.items()}
    same = wrapped(LORA)
    install_adapter_only_checkpointing(same)
    same.load_state_dict(averaged, strict=True)
    other = wrapped(dict(LORA, alpha=32))
    install_adapter_only_checkpointing(other)
    with pytest.raises(RuntimeError, match=r"another PEFT config .*alpha: 16 in the adapter, 32 in this model's"):
        other.load_state_dict(averaged, strict=True)


def test_merge_refuses_a_frozen_config_edited_after_training(tmp_path):
    """Editing exp/<tag>/peft_config.yaml after training (alpha x4) used to change the merge silently."""
    from espnet_peft.bin.merge import merge_experiment

    exp = experiment(tmp_path)
    write_yaml(exp / "peft_config.yaml", dict(LORA, alpha=64))
    with pytest.raises(PeftError, match=rf"adapter checkpoint {exp / 'adapter.pth'}: the adapter was trained with "
                                        rf"another PEFT config than {exp / 'peft_config.yaml'}: alpha: 16 in the "
                                        rf"adapter, 64 in {exp / 'peft_config.yaml'}"):
        merge_experiment(exp / "config.yaml", exp / "adapter.pth", tmp_path / "merged")
    assert not (tmp_path / "merged" / "model.pth").exists()
    write_yaml(exp / "peft_config.yaml", LORA)  # put back: it merges
    merge_experiment(exp / "config.yaml", exp / "adapter.pth", tmp_path / "merged")


def test_an_adapter_without_the_record_still_loads_with_a_warning(caplog):
    """Adapter files written before the record existed load as before, and say so."""
    model = wrapped(LORA)
    randomize_trainables(model)
    old = {k: v for k, v in espnet_peft.peft_state_dict(model).items() if k != KEY}
    fresh = wrapped(LORA)
    with caplog.at_level(logging.WARNING, logger="espnet_peft"):
        espnet_peft.load_peft_state_dict(fresh, old)
    assert "records no PEFT config" in caplog.text
    name = espnet_peft.get_plan(model).rows[0].name + ".lora_B"
    assert torch.equal(dict(fresh.named_parameters())[name], dict(model.named_parameters())[name])


def test_a_damaged_record_is_refused():
    state = espnet_peft.peft_state_dict(wrapped(LORA))
    state[KEY] = state[KEY] + 0.5
    with pytest.raises(PeftError, match=f"{KEY} is not a PEFT config record"):
        espnet_peft.load_peft_state_dict(wrapped(LORA), state)


# =========================================================================== B: numbers and keys
@pytest.mark.parametrize("line,key", [
    ("alpha: .nan", "alpha"), ("alpha: .inf", "alpha"), ("dropout: .nan", "dropout"),
    ("allocation: {weights: {attn: .inf}}", "allocation.weights.attn"),
], ids=["alpha_nan", "alpha_inf", "dropout_nan", "group_weight_inf"])
def test_non_finite_numbers_are_refused_naming_key_and_file(tmp_path, line, key):
    path = tmp_path / "p.yaml"
    path.write_text(f"method: lora\ntarget_modules: [attn.linear_q]\nrank: 2\n{line}\n")
    with pytest.raises(PeftError, match=rf"^{path}: {key}: (nan|inf) is not a finite number"):
        PeftConfig.from_file(path)


@pytest.mark.parametrize("budget", [".inf", ".nan", "'inf'", "'nan%'"])
def test_a_non_finite_budget_is_refused(tmp_path, budget):
    path = tmp_path / "p.yaml"
    path.write_text(f"method: lora\ntarget_modules: [attn.linear_q]\nbudget: {budget}\n")
    with pytest.raises(PeftError, match=rf"^{path}: budget.* not a finite number"):
        PeftConfig.from_file(path)


def test_float_options_must_be_finite():
    """The option kinds themselves (options resolved outside a config file, e.g. by the benchmark)."""
    lora = espnet_peft.get_method("lora")
    for value in (float("nan"), float("inf")):
        with pytest.raises(PeftError, match="option 'alpha' must be a finite number"):
            lora.options.resolve({"alpha": value}, "method 'lora'")
        with pytest.raises(PeftError, match="option 'dropout' must be a finite number"):
            lora.options.resolve({"dropout": value}, "method 'lora'")


def test_a_budget_that_rounds_to_nothing_is_below_one_unit():
    model = make_asr_model()
    cfg = {"method": "lora", "target_modules": ["attn.linear_q"], "budget": 1e-9}
    with pytest.raises(PeftError, match=r"budget 1e-09 of [\d,]+ model parameters \(0 parameters\) is too small for "
                                        r"lora on any target module: it is below one unit, which costs at least") as e:
        espnet_peft.plan_peft(model, cfg)
    assert "overrides" not in str(e.value)
    with pytest.raises(PeftError, match=r"budget 10 is too small for lora on any target module: it is below one unit"):
        espnet_peft.plan_peft(model, dict(cfg, budget=10))


@pytest.mark.parametrize("text,key,lines", [
    ("method: lora\ntarget_modules: [attn.linear_q]\nrank: 2\nalpha: 16\nalpha: 64\n", "alpha", (4, 5)),
    ("method: lora\ntarget_modules: [attn.linear_q]\nbudget: 1000\nallocation:\n  weights:\n    attn: 1\n"
     "    attn: 2\n", "allocation.weights.attn", (6, 7)),
], ids=["top_level", "nested"])
def test_a_key_given_twice_in_a_config_file_is_refused(tmp_path, text, key, lines):
    path = tmp_path / "p.yaml"
    path.write_text(text)
    with pytest.raises(PeftError, match=rf"^{path}: key '{key}' is given twice \(lines {lines[0]} and {lines[1]}\)"):
        PeftConfig.from_file(path)


def test_a_key_given_twice_in_a_json_config_or_a_frozen_config_is_refused(tmp_path):
    from espnet_peft.preflight import check_resume_config

    path = tmp_path / "p.json"
    path.write_text('{"method": "lora", "target_modules": ["attn.linear_q"], "rank": 2, "rank": 4}')
    with pytest.raises(PeftError, match=rf"^{path}: key 'rank' is given twice"):
        PeftConfig.from_file(path)
    (tmp_path / "checkpoint.pth").write_bytes(b"")
    (tmp_path / "peft_config.yaml").write_text("method: lora\nrank: 2\nrank: 4\ntarget_modules: [attn.linear_q]\n")
    with pytest.raises(PeftError, match=r"peft_config.yaml: key 'rank' is given twice \(lines 2 and 3\)"):
        check_resume_config(tmp_path, LORA)


def test_a_key_given_twice_in_a_sweep_grid_is_refused(tmp_path):
    from espnet_peft.sweep.grid import load_grid

    path = tmp_path / "grid.yaml"
    path.write_text("methods: [lora]\nbudgets: ['1%']\nbudgets: ['2%']\n")
    with pytest.raises(PeftError, match=rf"^{path}: key 'budgets' is given twice \(lines 2 and 3\)"):
        load_grid(path)


# =========================================================================== C: unreadable files
def random_files(root: Path, n: int = 40):
    """Random-byte files; among them the seeds that used to raise IndexError, KeyError and
    UnicodeDecodeError (no file name) and the weights-only errors that used to read as pickled code."""
    out = []
    for seed in list(range(n)) + [254]:
        g = torch.Generator().manual_seed(seed)
        size = int(torch.randint(1, 5000, (1,), generator=g))
        path = root / f"random{seed}.pth"
        path.write_bytes(bytes(torch.randint(0, 256, (size,), generator=g, dtype=torch.uint8).tolist()))
        out.append(path)
    return out


def test_random_bytes_are_named_as_not_a_valid_checkpoint(tmp_path):
    for path in random_files(tmp_path):
        with pytest.raises(PeftError) as e:
            load_state_file(path, "adapter checkpoint")
        assert f"adapter checkpoint {path}" in str(e.value) and "not a valid checkpoint" in str(e.value), str(e.value)
        assert "Python objects" not in str(e.value)


def test_truncated_checkpoints_are_named_as_not_valid(tmp_path):
    good = tmp_path / "good.pth"
    torch.save(espnet_peft.peft_state_dict(wrapped(LORA)), good)
    data = good.read_bytes()
    for cut in (1, 100, len(data) // 3, len(data) // 2, len(data) - 100, len(data) - 1):
        bad = tmp_path / f"cut{cut}.pth"
        bad.write_bytes(data[:cut])
        with pytest.raises(PeftError, match=rf"cannot read model file {bad}: the file is truncated or corrupt, it is "
                                            r"not a valid checkpoint"):
            load_state_file(bad)


def test_code_in_a_model_file_is_still_refused_as_code(tmp_path):
    class Payload:
        def __reduce__(self):
            return (os.system, ("true",))

    torch.save({"w": Payload()}, tmp_path / "evil.pth")
    with pytest.raises(PeftError, match=r"refusing to load model file \S*evil.pth: it holds Python objects besides "
                                        r"tensors \((posix|os|nt)\.system\)"):
        load_state_file(tmp_path / "evil.pth")


def test_merge_names_an_unreadable_adapter_or_pretrained_model(tmp_path):
    from espnet_peft.bin.merge import merge_experiment

    exp = experiment(tmp_path)
    for path in random_files(tmp_path, 6):
        with pytest.raises(PeftError, match=rf"cannot read adapter checkpoint {path}: .*not a valid checkpoint"):
            merge_experiment(exp / "config.yaml", path, tmp_path / "merged", verify=False)
    pre = tmp_path / "pre" / "model.pth"
    data = pre.read_bytes()
    pre.write_bytes(data[: len(data) // 2])
    with pytest.raises(PeftError, match=rf"cannot read pretrained model {pre}: .*not a valid checkpoint"):
        merge_experiment(exp / "config.yaml", exp / "adapter.pth", tmp_path / "merged", verify=False)
    assert not (tmp_path / "merged").exists()


# =========================================================================== D: failed writes
def failing_save(code: int, after: int = 64):
    """A torch.save that writes ``after`` bytes, then fails like a full disk (or a file too large)."""

    def save(obj, f, *args, **kwargs):
        f.write(b"\0" * after)
        raise OSError(code, os.strerror(code))

    return save


class FailingFile:
    """A file object whose writes fail with ENOSPC after ``limit`` bytes (the real torch.save writes
    through it, and turns the failure into its RuntimeError "unexpected pos")."""

    def __init__(self, fh, limit: int):
        self.fh, self.limit, self.n = fh, limit, 0

    def write(self, b):
        if self.n + len(b) > self.limit:
            self.fh.write(bytes(b)[: self.limit - self.n])
            self.n = self.limit
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.n += len(b)
        return self.fh.write(b)

    def flush(self):
        self.fh.flush()

    def fileno(self):
        return self.fh.fileno()

    def close(self):
        self.fh.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def failing_files(monkeypatch, limit: int = 200):
    original = ckpt._open_temp

    def open_temp(path):
        tmp, fh = original(path)
        return tmp, FailingFile(fh, limit)

    monkeypatch.setattr(ckpt, "_open_temp", open_temp)


def assert_intact(directory: Path, path: Path, before: bytes):
    assert path.read_bytes() == before  # the good file is still there, whole
    assert sorted(p.name for p in directory.iterdir()) == sorted([path.name])  # no temporary file left


@pytest.mark.parametrize("code,reason", [(errno.ENOSPC, "no space left on device"), (errno.EFBIG, "file too large")])
def test_a_failed_write_names_the_path_and_keeps_the_old_file(tmp_path, monkeypatch, code, reason):
    from espnet_peft.checkpoint import save_atomic
    from espnet_peft.errors import WriteFailed

    path = tmp_path / "model.pth"
    torch.save({"w": torch.ones(3)}, path)
    before = path.read_bytes()
    monkeypatch.setattr(torch, "save", failing_save(code))
    with pytest.raises(WriteFailed, match=rf"^cannot write merged model {path}: {reason}\. Nothing was written"):
        save_atomic({"w": torch.zeros(1000)}, path, "merged model")
    assert_intact(tmp_path, path, before)


def test_torch_write_failure_part_way_is_named(tmp_path, monkeypatch):
    """The real torch.save on a disk that fills up: torch reports "unexpected pos"; the OSError
    behind it gives the reason. Without it, the message still says what probably happened."""
    from espnet_peft.checkpoint import save_atomic
    from espnet_peft.errors import WriteFailed

    path = tmp_path / "3epoch.pth"
    torch.save({"w": torch.ones(3)}, path)
    before = path.read_bytes()
    failing_files(monkeypatch)
    with pytest.raises(WriteFailed, match=rf"^cannot write checkpoint {path}: no space left on device"):
        save_atomic({"w": torch.randn(1000)}, path)
    assert_intact(tmp_path, path, before)

    def unexpected_pos(obj, f, *args, **kwargs):
        f.write(b"PK")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")

    monkeypatch.setattr(torch, "save", unexpected_pos)
    with pytest.raises(WriteFailed, match=r"the write stopped part-way \(PyTorch: unexpected pos 704 vs 598\): most "
                                          r"likely no space left on device or a file too large"):
        save_atomic({"w": torch.randn(10)}, path)
    assert_intact(tmp_path, path, before)


def test_a_successful_write_replaces_the_file_and_keeps_a_link(tmp_path):
    from espnet_peft.checkpoint import save_atomic

    target = tmp_path / "2epoch.pth"
    torch.save({"w": torch.ones(1)}, target)
    (tmp_path / "latest.pth").symlink_to(target.name)
    save_atomic({"w": torch.zeros(2)}, tmp_path / "latest.pth")
    assert (tmp_path / "latest.pth").is_symlink()
    assert torch.equal(torch.load(target, weights_only=True)["w"], torch.zeros(2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["2epoch.pth", "latest.pth"]


def test_merge_write_failure_keeps_the_earlier_merge(tmp_path, monkeypatch):
    from espnet_peft.bin.merge import merge_experiment

    exp = experiment(tmp_path)
    out = tmp_path / "merged"
    merge_experiment(exp / "config.yaml", exp / "adapter.pth", out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    monkeypatch.setattr(torch, "save", failing_save(errno.ENOSPC))
    with pytest.raises(PeftError, match=rf"cannot write merged model {out / 'model.pth'}: no space left on device"):
        merge_experiment(exp / "config.yaml", exp / "adapter.pth", out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_training_checkpoints_are_written_atomically(tmp_path, monkeypatch):
    """ESPnet's trainer calls torch.save(state, output_dir / ...) itself: inside PeftTrainer.run those
    writes are atomic, and a full disk stops the run naming the file, the last good one intact."""
    from espnet2.train.trainer import Trainer

    from espnet_peft.trainer import PeftTrainer

    good = tmp_path / "checkpoint.pth"
    torch.save({"w": torch.ones(3)}, good)
    before, original = good.read_bytes(), torch.save

    def run(cls, model, **kwargs):
        torch.save({"model": model.state_dict()}, Path(kwargs["trainer_options"].output_dir) / "checkpoint.pth")

    monkeypatch.setattr(Trainer, "run", classmethod(run))
    failing_files(monkeypatch)
    options = argparse.Namespace(output_dir=str(tmp_path))
    dist = argparse.Namespace(distributed=False, dist_rank=0)
    with pytest.raises(PeftError, match=rf"cannot write checkpoint {good}: no space left on device"):
        PeftTrainer.run(model=torch.nn.Linear(64, 64), optimizers=[], schedulers=[], train_iter_factory=None,
                        valid_iter_factory=None, plot_attention_iter_factory=None, trainer_options=options,
                        distributed_option=dist)
    assert_intact(tmp_path, good, before)
    assert torch.save is original  # the routing ends with the run


def test_atomic_saves_leaves_file_objects_alone(tmp_path):
    import io

    from espnet_peft.checkpoint import atomic_saves

    original = torch.save
    with atomic_saves():
        assert torch.save is not original
        buf = io.BytesIO()
        torch.save({"w": torch.ones(2)}, buf)
        torch.save({"w": torch.ones(2)}, tmp_path / "a.pth")
    assert torch.save is original
    assert buf.getvalue()[:2] == b"PK" and sorted(p.name for p in tmp_path.iterdir()) == ["a.pth"]


def test_a_finite_divergence_is_caught_against_the_model_before_its_first_update(tmp_path):
    """PEFT starts from the identity: a validation pass before the first update measures the base
    model's own loss and accuracy on the target data. An epoch whose mean loss is far above that
    loss, or whose validation accuracy falls far below that accuracy, diverged even when every
    number stays finite (issue 28 item 4; issue 40 item 3: the reference used to be the mean of the
    first 4 training batches, 3 of them after updates, so a run that exploded in 3 steps passed)."""
    import torch

    from espnet_peft.divergence import ACCURACY_FLOOR, DIVERGENCE_FACTOR, FiniteGuard, TrainingDiverged

    class Toy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.value, self.acc = 2.0, 0.7

        def forward(self, **batch):
            return torch.tensor(self.value), {"acc": torch.tensor(self.acc)}, torch.tensor(4.0)

    m = Toy()
    guard = FiniteGuard(m, epoch=1, base_loss_file=tmp_path / "base_loss.json")
    guard.measure_base(m, [(["u1"], {}), (["u2"], {})])  # step 0: the base model on the dev set
    assert guard.base_loss == pytest.approx(2.0) and guard.base_acc == pytest.approx(0.7)
    assert m.training  # the pass leaves the model as it found it
    for v in (60.0, 80.0, 3.0):  # the first training batches explode after updates: no longer the reference
        m.value = v
        m()
    with pytest.raises(TrainingDiverged, match="training loss of epoch 1 is 47.*times the base model's 2"):
        guard.check("train")
    m.eval()
    m.value = 2.0 * DIVERGENCE_FACTOR * 1.5  # validation far above the base model's loss, but finite
    m()
    with pytest.raises(TrainingDiverged, match="validation loss of epoch 1 is 15.*7.5 times the base model's 2"):
        guard.check("valid")
    m.value, m.acc = 2.5, 0.036  # a loss still under the limit, but the accuracy is gone
    m()
    with pytest.raises(TrainingDiverged, match="validation accuracy of epoch 1 is 0.036"):
        guard.check("valid")
    m.acc = 0.7 * ACCURACY_FLOOR * 1.2
    m()
    guard.check("valid")  # a dip above the floor is not a divergence
    # a resumed run reads the base model's numbers back instead of measuring an adapted model's
    guard.remove()
    again = FiniteGuard(m, epoch=3, base_loss_file=tmp_path / "base_loss.json")
    assert again.base_loss == pytest.approx(2.0) and again.base_acc == pytest.approx(0.7)
    m.train()
    m.value = 9.0  # 4.5x: still under the limit
    m()
    again.check("train")
    m.value = 11.0
    m()
    with pytest.raises(TrainingDiverged, match="training loss of epoch 3"):
        again.check("train")


def test_the_reference_validation_pass_leaves_every_random_state_as_it_was():
    """The validation pass before the first update must change nothing of the training that follows:
    whatever it draws (dropout in a model, a data loader's seed), the random states are put back."""
    import random

    import numpy as np
    import torch

    from espnet_peft.divergence import FiniteGuard

    class Noisy(torch.nn.Module):
        def forward(self, **batch):
            random.random(), np.random.rand(), torch.rand(3)  # what dropout and data loaders draw
            return torch.tensor(1.0), {"acc": torch.tensor(0.5)}, torch.tensor(1.0)

    m = Noisy()
    guard = FiniteGuard(m)
    torch.manual_seed(7), np.random.seed(7), random.seed(7)
    expected = (torch.rand(2), np.random.rand(), random.random())
    torch.manual_seed(7), np.random.seed(7), random.seed(7)
    guard.measure_base(m, [(["u1"], {}), (["u2"], {})])
    got = (torch.rand(2), np.random.rand(), random.random())
    assert torch.equal(got[0], expected[0]) and got[1:] == expected[1:]
    assert guard.base_loss == 1.0
