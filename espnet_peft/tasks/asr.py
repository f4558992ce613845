"""``PeftASRTask``: ESPnet's ASRTask with --pretrained_model / --peft_config (see espnet_task)."""
from espnet2.tasks.asr import ASRTask

from ..espnet_task import PeftTaskMixin


class PeftASRTask(PeftTaskMixin, ASRTask):
    pass
