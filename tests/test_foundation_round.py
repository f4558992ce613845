"""Foundation training in rounds (local/foundation_round.py): the weights a next round starts from and
the schedule it continues."""
from __future__ import annotations

import datetime
import json

import pytest
import torch
import yaml

from conftest import ROOT
from espnet_fixtures import local_module


def _fake_exp(path, accs, steps_per_epoch=100, keep=(1, 2, 3, 4)):
    """An ESPnet training directory as an interrupted run leaves it."""
    path.mkdir(parents=True)
    states = {}
    for e in keep:
        states[e] = {"w": torch.full((2, 3), float(e)), "n": torch.tensor(e)}
        torch.save(states[e], path / f"{e}epoch.pth")
    stats = {e: {"valid": {"acc": a, "time": datetime.timedelta(seconds=1)}, "train": {"loss": 1.0}}
             for e, a in enumerate(accs, 1)}
    torch.save({"model": {}, "reporter": {"stats": stats, "epoch": len(accs)}, "optimizers": [],
                "schedulers": [{"last_epoch": steps_per_epoch * len(accs)}], "scaler": None},
               path / "checkpoint.pth")
    (path / "train_wall.json").write_text(json.dumps({"train_wall_seconds": 600}))
    return states


@pytest.fixture
def config(tmp_path):
    cfg = {"optim": "adam", "optim_conf": {"lr": 0.001}, "scheduler": "warmuplr",
           "scheduler_conf": {"warmup_steps": 800}, "max_epoch": 40}
    f = tmp_path / "train.yaml"
    f.write_text(yaml.safe_dump(cfg))
    return f


def test_round_averages_the_best_epochs_in_half_precision(tmp_path, config):
    fr = local_module("foundation_round")
    _fake_exp(tmp_path / "exp", accs=[0.1, 0.5, 0.3, 0.4])
    assert fr.main(["--exp", str(tmp_path / "exp"), "--out", str(tmp_path / "round"), "--nbest", "2",
                    "--config", str(config)]) == 0
    state = torch.load(tmp_path / "round" / "model.pth", weights_only=True)
    assert state["w"].dtype == torch.float16
    assert torch.equal(state["w"], torch.full((2, 3), 3.0, dtype=torch.float16))  # epochs 2 and 4
    info = json.loads((tmp_path / "round" / "round.json").read_text())
    assert info["rounds"][0]["averaged_epochs"] == [2, 4] and info["steps_total"] == 400
    # a second round appends to the history and counts its steps on top
    _fake_exp(tmp_path / "exp2", accs=[0.6, 0.7], keep=(1, 2))
    # round 2 ran the piecewise schedule round 1 wrote: round 3 still continues round 1's warmuplr
    (tmp_path / "exp2" / "config.yaml").write_text((tmp_path / "round" / "train.yaml").read_text())
    fr.main(["--exp", str(tmp_path / "exp2"), "--out", str(tmp_path / "round"), "--nbest", "1", "--config", str(config)])
    info = json.loads((tmp_path / "round" / "round.json").read_text())
    assert [r["round"] for r in info["rounds"]] == [1, 2] and info["steps_total"] == 600 and info["epochs_total"] == 6
    nxt = yaml.safe_load((tmp_path / "round" / "train.yaml").read_text())
    assert nxt["scheduler_conf"]["warmup_lr_list"][1] == pytest.approx(fr.warmuplr(600 + fr.REWARMUP_STEPS, 0.001, 800))


def test_next_round_continues_the_learning_rate_schedule(tmp_path, config):
    """After the re-warmup, ESPnet's own scheduler in the next round gives the learning rate the
    first round's warmuplr would have had at the same total step (within 3%) up to the horizon, and
    keeps decaying past it."""
    from espnet2.schedulers.piecewise_linear_warmup_lr import PiecewiseLinearWarmupLR
    from espnet2.schedulers.warmup_lr import WarmupLR

    fr = local_module("foundation_round")
    _fake_exp(tmp_path / "exp", accs=[0.1, 0.2, 0.3, 0.4], steps_per_epoch=500)
    fr.main(["--exp", str(tmp_path / "exp"), "--out", str(tmp_path / "round"), "--config", str(config),
             "--horizon_epochs", "4"])
    nxt = yaml.safe_load((tmp_path / "round" / "train.yaml").read_text())

    def lrs(make, lr, steps):
        opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
        sched, out = make(opt), {}
        for s in range(1, max(steps) + 1):
            opt.step()
            sched.step()
            if s in steps:
                out[s] = opt.param_groups[0]["lr"]
        return out

    probe = [400, 1000, 1500, 2000]
    new = lrs(lambda o: PiecewiseLinearWarmupLR(o, **nxt["scheduler_conf"]), nxt["optim_conf"]["lr"], probe)
    old = lrs(lambda o: WarmupLR(o, warmup_steps=800), 0.001, [2000 + s for s in probe])
    for s in probe:
        assert new[s] == pytest.approx(old[2000 + s], rel=0.03), s
    assert nxt["max_epoch"] == 40
    tail = lrs(lambda o: PiecewiseLinearWarmupLR(o, **nxt["scheduler_conf"]), nxt["optim_conf"]["lr"], [2000, 3000, 6000])
    assert tail[2000] > tail[3000] > tail[6000] > 0


def test_no_finished_epoch_is_a_clear_error(tmp_path, config):
    fr = local_module("foundation_round")
    (tmp_path / "exp").mkdir()
    with pytest.raises(SystemExit, match="no finished epoch"):
        fr.main(["--exp", str(tmp_path / "exp"), "--out", str(tmp_path / "r"), "--config", str(config)])


def test_a_round_that_resumed_the_previous_run_counts_only_its_own_epochs(tmp_path, config):
    """A round continued with ESPnet's --resume finds the previous round's epochs in the run."""
    fr = local_module("foundation_round")
    exp, out = tmp_path / "exp", tmp_path / "round"
    _fake_exp(exp, accs=[0.1, 0.2])
    fr.main(["--exp", str(exp), "--out", str(out), "--nbest", "1", "--config", str(config)])
    # the same run resumed for two more epochs (train_wall.json adds up both trainings)
    import shutil

    shutil.rmtree(exp)
    _fake_exp(exp, accs=[0.1, 0.2, 0.3, 0.25], keep=(1, 2, 3, 4))
    (exp / "train_wall.json").write_text(json.dumps({"train_wall_seconds": 1500}))
    fr.main(["--exp", str(exp), "--out", str(out), "--nbest", "1", "--config", str(config)])
    info = json.loads((out / "round.json").read_text())
    r2 = info["rounds"][1]
    assert r2["resumed"] and r2["valid_acc"] == {"3": 0.3, "4": 0.25} and r2["epochs"] == 2
    assert r2["steps"] == 200 and info["steps_total"] == 400 and info["epochs_total"] == 4
    assert r2["train_wall_seconds"] == 900 and r2["averaged_epochs"] == [3]
    # nothing new in the run: a clear error, the round file untouched
    before = (out / "round.json").read_text()
    with pytest.raises(SystemExit, match="no epoch after round 2"):
        fr.main(["--exp", str(exp), "--out", str(out), "--nbest", "1", "--config", str(config)])
    assert (out / "round.json").read_text() == before


def test_packaged_model_records_its_rounds_epochs_and_command(tmp_path, config):
    """Stage 9 (local/package_foundation.py) on a model trained in rounds: RESULTS.md names the
    epochs ESPnet averaged, the command and every round (issue 17: the exact command, epochs, wall)."""
    fr, pkg = local_module("foundation_round"), local_module("package_foundation")
    exp, out = tmp_path / "exp", tmp_path / "round"
    states = _fake_exp(exp, accs=[0.1, 0.5, 0.3, 0.4])
    fr.main(["--exp", str(exp), "--out", str(out), "--nbest", "2", "--config", str(config), "--command", "round one"])
    # ESPnet's end-of-training average: valid.acc.ave.pth -> valid.acc.ave_2best.pth (epochs 2 and 4)
    torch.save({k: (states[2][k] + states[4][k]) / 2 for k in ("w",)}, exp / "valid.acc.ave_2best.pth")
    (exp / "valid.acc.ave.pth").symlink_to("valid.acc.ave_2best.pth")
    (exp / "config.yaml").write_text(yaml.safe_dump({"max_epoch": 40, "encoder": "e_branchformer"}))
    (exp / "command.txt").write_text("cd egs2/embedded/asr1 && ./run.sh --pretrain true\n")
    bpe = tmp_path / "bpe"
    bpe.mkdir()
    (bpe / "bpe.model").write_bytes(b"x")
    (bpe / "tokens.txt").write_text("<blank>\n<unk>\n<sos/eos>\n")
    assert pkg.main(["--exp", str(exp), "--bpedir", str(bpe), "--out", str(tmp_path / "ship"),
                     "--rounds", str(out / "round.json")]) == 0
    text = (tmp_path / "ship" / "RESULTS.md").read_text()
    assert "(the average of epochs 2, 4)" in text and "- epochs: 4," in text
    assert "- command: `cd egs2/embedded/asr1 && ./run.sh --pretrain true`" in text
    assert "| 1 | " in text and "| 1-4 | 400 | 10.0 | round one |" in text
    assert torch.equal(torch.load(tmp_path / "ship" / "model.pth", weights_only=True)["w"], torch.full((2, 3), 3.0))
