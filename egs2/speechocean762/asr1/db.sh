# Corpus location of the speechocean762 recipe (read by local/data.sh). Empty = not available here;
# a value already in the environment wins, so `SPEECHOCEAN762=/data/speechocean762 ./run.sh` works
# without editing.
# SPEECHOCEAN762: the corpus root, the folder holding train/, test/ and WAVE/. Either
#   - OpenSLR resource 101: https://www.openslr.org/101/ (speechocean762.tar.gz, about 520 MB), unpacked; or
#   - git clone https://github.com/jimbozhang/speechocean762 (the same tree; its two score JSON files
#     under resource/ are stored with Git LFS and are not needed for ASR).
SPEECHOCEAN762="${SPEECHOCEAN762:-}"
