"""ESPnet's ``espnet2.bin.s2t_inference`` on a PEFT S2T (OWSM) experiment, unmerged: see
``espnet_peft.inference.run_inference``."""
from espnet_peft.bin._common import inference_entry

main = inference_entry("s2t")

if __name__ == "__main__":
    main()
