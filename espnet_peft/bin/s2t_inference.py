#!/usr/bin/env python3
"""``espnet2.bin.s2t_inference`` for adapter checkpoints: decodes a PEFT experiment directly
(``--s2t_train_config exp/.../config.yaml --s2t_model_file exp/.../valid.acc.ave.pth``)
without merging first. Merged models need no espnet_peft: use ``espnet2.bin.s2t_inference``."""
import espnet2.bin.s2t_inference as stock

from espnet_peft.tasks.s2t import PeftS2TTask


def main(cmd=None):
    from espnet_peft.methods.hff import register_with_espnet

    register_with_espnet()
    stock.S2TTask = PeftS2TTask  # build_model_from_file now rebuilds the wrapped model
    stock.main(cmd)


if __name__ == "__main__":
    main()
