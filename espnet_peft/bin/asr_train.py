#!/usr/bin/env python3
"""Train a PEFT adapter on a pretrained ESPnet ASR model with ESPnet's own trainer.

Every option of ``espnet2.bin.asr_train`` plus ``--peft_config``, ``--pretrained_model`` and
``--pretrained_config``; see ``espnet_peft.espnet_task``.
"""
from espnet_peft.tasks.asr import PeftASRTask


def get_parser():
    return PeftASRTask.get_parser()


def main(cmd=None):
    PeftASRTask.main(cmd=cmd)


if __name__ == "__main__":
    main()
