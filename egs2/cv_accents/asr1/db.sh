# Corpus locations of the Common Voice accents recipe (read by local/data.sh). Empty = not available
# here; a value already in the environment wins, so `COMMONVOICE=/data/cv/en ./run.sh` works.
# COMMONVOICE: the English directory of a Common Voice release (cv-corpus-<version>-<date>/en, holding
#              clips/ and validated/train/dev/test.tsv), or the release directory that contains en/.
COMMONVOICE="${COMMONVOICE:-}"
# LIBRISPEECH: the directory holding LibriSpeech/test-clean and LibriSpeech/test-other (OpenSLR 12).
LIBRISPEECH="${LIBRISPEECH:-}"
