# Corpus locations of the OGI Kids recipe (read by local/data.sh). Empty = not available here;
# a value already in the environment wins, so `OGI_KIDS=/data/cslu_kids ./run.sh` works without editing.
# OGI_KIDS: the CSLU Kids' Speech root (LDC2007S18), the directory holding docs/ speech/ trans/ verify/.
OGI_KIDS="${OGI_KIDS:-}"
# LIBRISPEECH: the directory holding LibriSpeech/test-clean and LibriSpeech/test-other (OpenSLR 12).
LIBRISPEECH="${LIBRISPEECH:-}"
