"""ESPnet's ``espnet2.bin.asr_inference`` on a PEFT ASR experiment, unmerged: see
``espnet_peft.inference.run_inference``."""
from espnet_peft.bin._common import inference_entry

main = inference_entry("asr")

if __name__ == "__main__":
    main()
