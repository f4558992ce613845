"""Files an experiment directory holds to tell later stages (and sweeps) about its run.

Kept free of heavy imports: the sweep driver reads them without loading ESPnet.
"""

#: written by PeftTrainer when a run stops on non-finite values; merge refuses such a directory and
#: a learning-rate search scores it as the worst rate
DIVERGED = "diverged.json"
#: the PEFT config an experiment was trained with, frozen in its directory
FROZEN_PEFT_CONFIG = "peft_config.yaml"
#: held by a training run in its output directory
TRAIN_LOCK = "train.lock"
