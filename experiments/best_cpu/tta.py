"""Scores runs on validation faces under each set of test-time views.

    python experiments/best_cpu/tta.py outputs/train/runs/<time> outputs/ablation_full/m/0 ...

Each run's best checkpoint predicts ``--n`` seeded validation faces, as aligned crops and tilted
in larger pictures, found and cropped by the face detector (framing.py's layout), once per
setting of ``SETTINGS``: no extra view, the mirror, the mirror and two zooms. A system's default
views (``tta_flip``, ``tta_scales`` of conf/model/) are chosen from these scores, on the
validation split. The table goes to ``tta_val.csv`` in each run folder, which the report reads;
runs that have one are skipped unless ``--force``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from framing import score_each_run, score_run  # this folder's detector-framing scorer
from run import TTA_FILE  # this folder's report script, which reads what this writes
from tqdm import tqdm

from agefair.models.tta import view_count

#: Test-time views, by name: the mirror (``tta_flip``) and zoom factors (``tta_scales``).
SETTINGS = {
    "none": {"tta_flip": False, "tta_scales": ()},
    "mirror": {"tta_flip": True, "tta_scales": ()},
    "mirror, zooms 0.97 and 1.03": {"tta_flip": True, "tta_scales": (0.97, 1.03)},
    "mirror, zooms 0.94 and 1.06": {"tta_flip": True, "tta_scales": (0.94, 1.06)},
}


def score_settings(run_dir: Path, yunet: Path, n: int) -> pd.DataFrame:
    """One row per setting: its scores on aligned crops and on detector-framed faces."""
    rows = []
    for name, tta in SETTINGS.items():
        aligned, framed = score_run(run_dir, yunet, n, tta=tta).iloc[:2].to_dict("records")
        rows.append(
            {
                "views": name,
                "passes": view_count(**tta),
                "faces": aligned["faces"],
                **{k: aligned[k] for k in ("age_mae", "gender_acc", "race_acc")},
                **{f"framed_{k}": framed[k] for k in ("age_mae", "gender_acc", "race_acc")},
            }
        )
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> None:
    for run_dir, table in score_each_run(argv, __doc__, TTA_FILE, score_settings, 2000):
        tqdm.write(f"{run_dir}:\n{table.to_string(index=False)}")


if __name__ == "__main__":
    main()
