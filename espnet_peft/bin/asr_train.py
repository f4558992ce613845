"""Train a PEFT adapter on a pretrained ESPnet ASR model with ESPnet's trainer: see ``_common.train_entry``."""
from espnet_peft.bin._common import train_entry

get_parser, main = train_entry("asr")

if __name__ == "__main__":
    main()
