"""The inference CLIs (espnet_peft.bin.{asr,s2t}_inference): ESPnet's own options and ours in --help."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["asr", "s2t"])
def test_help_lists_the_routing_options_beside_espnets(name):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    res = subprocess.run([sys.executable, "-m", f"espnet_peft.bin.{name}_inference", "--help"], capture_output=True,
                         text=True, env=env, cwd=ROOT, timeout=300)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert f"--{name}_train_config" in out  # ESPnet's options are all there
    routing = out[out.index("espnet-peft routing"):]
    for option, says in (("--adapter NAME=CHECKPOINT", "an adapter to route to"),
                         ("--utt2adapter FILE", "utterance id -> adapter NAME")):
        assert option in routing and says in routing
