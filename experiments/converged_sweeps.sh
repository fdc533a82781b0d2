# Sourced by the studies' converged.sh scripts, with their arguments: where the multirun folders
# go (AGEFAIR_STUDIES, default outputs/studies), the interpreter (PYTHON), and `sweep`, which runs
# one resumable multirun with the machine's overrides (the arguments; without any, two
# one-thread members at a time on the CPU).
cd "$(dirname "${BASH_SOURCE[0]}")/.."
studies=${AGEFAIR_STUDIES:-outputs/studies}
python=${PYTHON:-python}
if (($#)); then run=("$@"); else run=(hydra/launcher=parallel threads=1); fi
sweep() { "$python" -m agefair.train -m "$@" "${run[@]}" callbacks.progress.refresh_rate=0; }
