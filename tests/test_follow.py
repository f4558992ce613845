"""local/follow.py: the progress lines the recipe prints while a job writes its log."""
from __future__ import annotations

import signal
import subprocess
import sys
import time

from conftest import ROOT

sys.path.insert(0, str(ROOT / "local"))
import follow  # noqa: E402

EPOCH = ("[vm] 2026-12-03 12:01:53,838 (trainer:394) INFO: 3epoch results: [train] iter_time=0.003, "
         "forward_time=0.707, loss_ctc=62.146, loss_att=39.566, acc=0.567, loss=46.340, backward_time=0.201, "
         "[valid] loss_ctc=40.520, cer_ctc=0.301, loss_att=23.294, acc=0.719, cer=0.274, wer=0.930, loss=28.462, "
         "time=17.71 seconds, total_count=11, [time] time=46.52 seconds, total_count=32")


def test_epoch_and_decode_lines():
    assert follow.epoch_line(EPOCH, 6) == "epoch 3/6, train loss 46.34, valid loss 28.46, valid acc 0.719, 46.52 seconds"
    assert follow.epoch_line("INFO: The best model has been updated: valid.acc") is None
    assert follow.decode_line("decode.py: progress 10/100 utterances of job 1 of 2 (merged/x), about 1.0 min left") \
        == "progress 10/100 utterances of job 1 of 2 (merged/x), about 1.0 min left"
    assert follow.decode_line("INFO: decoding") is None


def test_follows_a_growing_log_and_stops_with_a_last_read(tmp_path):
    log = tmp_path / "train.log"
    log.write_text("an earlier run's line\n" + EPOCH.replace("3epoch", "1epoch") + "\n")
    (tmp_path / "config.yaml").write_text("max_epoch: 4\n")
    p = subprocess.Popen([sys.executable, str(ROOT / "local" / "follow.py"), "--log", str(log), "--kind", "train",
                          "--poll", "0.1", "--prefix", "x"], stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)
    with open(log, "a") as fh:
        fh.write(EPOCH.replace("3epoch", "2epoch")[:60])  # half a line: not printed until complete
    time.sleep(0.3)
    with open(log, "a") as fh:
        fh.write(EPOCH.replace("3epoch", "2epoch")[60:] + "\n" + EPOCH)  # the last line lacks its newline ...
    p.send_signal(signal.SIGTERM)  # ... the job ended: a last read, then exit
    out, _ = p.communicate(timeout=10)
    lines = out.splitlines()
    assert [l.split(": ", 1)[1].split(",")[0] for l in lines] == ["epoch 1/4", "epoch 2/4"], out
    assert all(l.split(" ", 1)[1].startswith("x: ") for l in lines)


def test_skips_an_earlier_runs_log_and_rereads_a_rewritten_one(tmp_path):
    log = tmp_path / "decode.1.log"
    log.write_text("decode.py: progress 5/5 utterances of job 1 of 1 (old), about 0.0 min left\n")
    p = subprocess.Popen([sys.executable, str(ROOT / "local" / "follow.py"), "--log", str(log), "--kind", "decode",
                          "--poll", "0.1", "--from_end"], stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)
    log.write_text("decode.py: progress 1/9 utterances of job 1 of 2 (new), about 1.0 min left\n")  # rewritten
    time.sleep(0.5)
    p.send_signal(signal.SIGTERM)
    out, _ = p.communicate(timeout=10)
    assert "(new)" in out and "(old)" not in out, out


BATCH = ("[vm] 2026-12-03 15:06:12,354 (trainer:811) INFO: 4epoch:train:21-30batch: iter_time=0.008, "
         "forward_time=4.286, loss_ctc=54.594, loss_att=36.383, acc=0.560, loss=41.847, backward_time=1.928")


def test_within_an_epoch_progress_lines_are_printed_now_and_then(tmp_path):
    """Issue 28: the console is never silent for a whole epoch: ESPnet's batch lines are printed (the
    batches done and their loss), at most one per --every seconds; epoch lines always."""
    assert follow.batch_line(BATCH, 6) == "epoch 4/6: 30 batches done, train loss 41.85"
    assert follow.batch_line(EPOCH) is None and follow.epoch_line(BATCH) is None
    log = tmp_path / "train.log"
    log.write_text("")
    p = subprocess.Popen([sys.executable, str(ROOT / "local" / "follow.py"), "--log", str(log), "--kind", "train",
                          "--poll", "0.1", "--every", "0.6", "--max_epoch", "6"], stdout=subprocess.PIPE, text=True)
    time.sleep(0.8)
    with open(log, "a") as fh:  # two batch lines at once: only the first is printed
        fh.write(BATCH + "\n" + BATCH.replace("21-30", "31-40") + "\n")
    time.sleep(0.3)
    with open(log, "a") as fh:  # an epoch line is always printed
        fh.write(EPOCH + "\n")
    time.sleep(0.3)
    p.send_signal(signal.SIGTERM)
    out, _ = p.communicate(timeout=10)
    shown = [l.split(" ", 1)[1] for l in out.splitlines()]
    assert shown == ["epoch 4/6: 30 batches done, train loss 41.85",
                     "epoch 3/6, train loss 46.34, valid loss 28.46, valid acc 0.719, 46.52 seconds"], out
