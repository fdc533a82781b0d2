# Sourced by the studies' converged.sh scripts, with their arguments: where the multirun folders
# go (AGEFAIR_STUDIES, default outputs/studies), the interpreter (PYTHON), and `sweep`, which runs
# one resumable multirun with the machine's overrides (the arguments; without any, two
# one-thread members at a time on the CPU).
cd "$(dirname "${BASH_SOURCE[0]}")/.."
studies=${AGEFAIR_STUDIES:-outputs/studies}
python=${PYTHON:-python}
if (($#)); then run=("$@"); else run=(hydra/launcher=parallel threads=1); fi

# sweep NAME OVERRIDES...: the multirun $studies/NAME. Its finished members are first restored
# from the study's records ($records/NAME, kept in the repository beside the report, see
# agefair/training/records.py), so a machine without the earlier outputs trains only the rest,
# and afterwards the members finished by then are saved back there to be committed.
sweep() {
    local name=$1 status=0
    shift
    "$python" -m agefair.training.records restore "$studies/$name" "$records/$name"
    "$python" -m agefair.train -m "$@" hydra.sweep.dir="$studies/$name" "${run[@]}" \
        callbacks.progress.refresh_rate=0 || status=$?
    "$python" -m agefair.training.records save "$studies/$name" "$records/$name"
    return "$status"
}
