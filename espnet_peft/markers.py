"""Files an experiment directory holds to tell later stages (and sweeps) about its run.

Kept free of heavy imports: the sweep driver reads them without loading ESPnet.
"""

#: written by PeftTrainer when a run stops on non-finite values; merge refuses such a directory and
#: a learning-rate search scores it as the worst rate
DIVERGED = "diverged.json"
