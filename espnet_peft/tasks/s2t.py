"""``PeftS2TTask``: ESPnet's S2TTask (OWSM) with --pretrained_model / --peft_config."""
from espnet2.tasks.s2t import S2TTask

from ..espnet_task import PeftTaskMixin


class PeftS2TTask(PeftTaskMixin, S2TTask):
    pass
