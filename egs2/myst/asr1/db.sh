# Corpus locations of the MyST recipe (read by local/data.sh). Empty = not available here;
# a value already in the environment wins, so `MYST=/data/myst ./run.sh` works without editing.
# MYST: the directory holding myst_child_conv_speech/ (LDC2021S05) or the Boulder Learning
#       release's corpora/myst/ tree (anything with data/{train,development,test} below it).
MYST="${MYST:-}"
# LIBRISPEECH: the directory holding LibriSpeech/test-clean and LibriSpeech/test-other (OpenSLR 12).
LIBRISPEECH="${LIBRISPEECH:-}"
