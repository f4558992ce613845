#!/usr/bin/env python3
"""Train a PEFT adapter on a pretrained ESPnet S2T (OWSM) model with ESPnet's own trainer.

Every option of ``espnet2.bin.s2t_train`` plus ``--peft_config``, ``--pretrained_model`` and
``--pretrained_config``; see ``espnet_peft.espnet_task``.
"""
from espnet_peft.tasks.s2t import PeftS2TTask


def get_parser():
    return PeftS2TTask.get_parser()


def main(cmd=None):
    PeftS2TTask.main(cmd=cmd)


if __name__ == "__main__":
    main()
