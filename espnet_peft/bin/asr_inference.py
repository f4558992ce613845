#!/usr/bin/env python3
"""``espnet2.bin.asr_inference`` for adapter checkpoints: decodes a PEFT experiment directly
(``--asr_train_config exp/.../config.yaml --asr_model_file exp/.../valid.acc.ave.pth``)
without merging first. Merged models need no espnet_peft: use ``espnet2.bin.asr_inference``."""
import espnet2.bin.asr_inference as stock

from espnet_peft.tasks.asr import PeftASRTask


def main(cmd=None):
    from espnet_peft.methods.hff import register_with_espnet

    register_with_espnet()
    stock.ASRTask = PeftASRTask  # build_model_from_file now rebuilds the wrapped model
    stock.main(cmd)


if __name__ == "__main__":
    main()
