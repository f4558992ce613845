#!/usr/bin/env python3
"""``espnet2.bin.s2t_inference`` for adapter checkpoints: decodes a PEFT experiment directly
(``--s2t_train_config exp/.../config.yaml --s2t_model_file exp/.../valid.acc.ave.pth``)
without merging first. Merged models need no espnet_peft: use ``espnet2.bin.s2t_inference``.

The experiment's frozen PEFT config is used (``peft_config.yaml`` beside the config), model and
LM files load with ``weights_only=True``, and audio at another sample rate than the model's
frontend, or with more than one channel, is refused before the model is loaded."""
import espnet2.bin.s2t_inference as stock

from espnet_peft.espnet_task import check_inference_data, weights_only_loads
from espnet_peft.tasks.s2t import PeftS2TTask


def main(cmd=None):
    from espnet_peft.methods.hff import register_with_espnet

    args = stock.get_parser().parse_args(cmd)
    check_inference_data(args.data_path_and_name_and_type, args.s2t_train_config)
    register_with_espnet()
    stock.S2TTask = PeftS2TTask  # build_model_from_file now rebuilds the wrapped model
    with weights_only_loads():
        stock.main(cmd)


if __name__ == "__main__":
    main()
