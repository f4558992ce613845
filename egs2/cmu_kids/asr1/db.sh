# Corpus locations of the CMU Kids recipe (read by local/data.sh). Empty = not available here;
# a value already in the environment wins, so `CMU_KIDS=/data/cmu_kids ./run.sh` works without editing.
# CMU_KIDS: the LDC97S63 root, the directory holding cmu_kids/{kids,tables,doc} (or kids/ itself).
CMU_KIDS="${CMU_KIDS:-}"
# LIBRISPEECH: the directory holding LibriSpeech/test-clean and LibriSpeech/test-other (OpenSLR 12).
LIBRISPEECH="${LIBRISPEECH:-}"
