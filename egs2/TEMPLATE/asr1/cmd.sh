# Job backend of the recipe (the role of Kaldi's cmd.sh).
#   local: jobs run on this machine (decoding jobs in parallel, each with its own log)
#   slurm: every job is an sbatch array job; set partition / resources below
#          (extra sbatch options: export ESPNET_PEFT_SLURM_ARGS="--account=...")
cmd_backend="${cmd_backend:-local}"

case "${cmd_backend}" in
    local)
        export train_cmd="${MAIN_ROOT}/local/launch.py --backend local"
        export cuda_cmd="${MAIN_ROOT}/local/launch.py --backend local"
        export decode_cmd="${MAIN_ROOT}/local/launch.py --backend local"
        ;;
    slurm)
        export train_cmd="${MAIN_ROOT}/local/launch.py --backend slurm --mem 8G --time 24:00:00"
        export cuda_cmd="${MAIN_ROOT}/local/launch.py --backend slurm --mem 32G --time 48:00:00 --cpus 8"
        export decode_cmd="${MAIN_ROOT}/local/launch.py --backend slurm --mem 8G --time 12:00:00"
        ;;
    *)
        echo "cmd.sh: unknown cmd_backend '${cmd_backend}' (local or slurm)" >&2
        exit 1
        ;;
esac
