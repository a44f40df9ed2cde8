"""Published figures that reports put beside ours.

Lin, Lu, Bal, Sengupta, "Benchmarking Spiking Neural Network Learning Methods with Varying
Locality", IEEE Access 13 (2025), arXiv 2402.01782: Table II (accuracy), Table III (FGSM),
Table IV (backdoor).
"""

from __future__ import annotations

from spikebench.attacks.art import EPSILONS
from spikebench.datasets.poison import POISON_RATES

__all__ = ["EPSILONS", "PAPER", "PAPER_DATA", "PAPER_FGSM_FIELDS", "PAPER_FGSM_WHY",
           "PAPER_TRIGGER", "PAPER_TRIGGER_WHY", "POISON_RATES", "TABLE_II", "TABLE_III",
           "TABLE_IV", "paper_accuracy"]

PAPER = "Lin et al. 2025, Table II"
PAPER_DATA = ("N-MNIST: 60000 training / 10000 test samples; TIMIT: 3696 training / 192 "
              "core-test utterances")

# (task, rule, arch) -> accuracy in %
TABLE_II: dict[tuple[str, str, str], float] = {
    ("nmnist", "bptt", "ff"): 97.12,
    ("nmnist", "bptt", "rec"): 97.77,
    ("nmnist", "eprop", "ff"): 96.80,
    ("nmnist", "eprop", "rec"): 96.44,
    ("nmnist", "decolle", "ff"): 93.61,
    ("nmnist", "decolle", "rec"): 90.52,
    ("timit", "bptt", "ff"): 52.31,
    ("timit", "bptt", "rec"): 56.93,
    ("timit", "eprop", "ff"): 51.12,
    ("timit", "eprop", "rec"): 54.99,
    ("timit", "decolle", "ff"): 42.30,
    ("timit", "decolle", "rec"): 45.70,
}

# What ``--paper`` changes so that our FGSM and backdoor magnitudes come nearest the
# paper's, as the fidelity audit (``spikebench run fidelity``, README) measured on BPTT FF/REC
# networks: FGSM on networks trained on normalised event counts is 15.4 pp from Table III
# (binary frames, our default: 29.9 pp; count frames with eps scaled by the largest count:
# 15.2, the same within a seed's noise); a 1-pixel trigger at every 4th step is 8.6 pp from
# Table IV's ASR (the paper's stated 4 pixels at every step: 78.5 pp). The defaults stay the
# paper's own description (binary frames, 4 pixels at every step).
PAPER_FGSM_FIELDS = {"frames": "normalised"}
PAPER_TRIGGER = {"pixels": [[30, 30]], "period": 4}
# ... said in the fgsm and backdoor reports, beside the setting they ran
PAPER_FGSM_WHY = ("Our default is binary frames (the paper's stated setup leaves the frames "
                  "open); `--paper` trains on normalised event counts, the setting closest to "
                  "Table III in the fidelity audit (`spikebench run fidelity`: 15.4 pp from it "
                  "vs 29.9 for binary frames, BPTT).")
PAPER_TRIGGER_WHY = ("Our default is the paper's description, 4 pixels in both polarities at "
                     "every step; `--paper` uses 1 pixel at every 4th step, the trigger closest "
                     "to Table IV in the fidelity audit, `spikebench run fidelity`: 8.6 pp from "
                     "its ASR vs 78.5 for the default, BPTT.")

# which published task a data set is compared with
TASK_OF_DATASET = {"nmnist": "nmnist", "nmnist-sim": "nmnist", "timit": "timit"}


def paper_accuracy(dataset: str, rule: str, arch: str) -> float | None:
    task = TASK_OF_DATASET.get(dataset)
    return TABLE_II.get((task, rule, arch)) if task else None


# Table III: FGSM accuracy (%) on N-MNIST, crafted on the ANN counterpart.
# (arch, rule) -> accuracy at each epsilon of EPSILONS
TABLE_III: dict[tuple[str, str], tuple[float, ...]] = {
    ("ff", "bptt"): (97.12, 83.82, 16.78, 4.34, 1.22, 0.73),
    ("ff", "eprop"): (96.80, 89.90, 41.27, 12.33, 3.27, 2.87),
    ("ff", "decolle"): (93.61, 83.48, 45.11, 28.57, 21.29, 17.79),
    ("rec", "bptt"): (97.77, 94.66, 80.76, 58.73, 27.69, 18.55),
    ("rec", "eprop"): (96.44, 93.04, 78.28, 60.57, 35.07, 18.25),
    ("rec", "decolle"): (90.52, 86.76, 84.14, 72.81, 47.56, 23.75),
}

# Table IV: backdoor on N-MNIST, (clean accuracy %, ASR %) at each poison rate.
TABLE_IV: dict[tuple[str, str], tuple[tuple[float, float], ...]] = {
    ("ff", "bptt"): ((96.23, 4.80), (93.34, 33.54), (91.62, 43.76), (89.64, 66.06),
                     (87.47, 78.19)),
    ("ff", "eprop"): ((96.85, 1.93), (93.46, 33.35), (92.30, 46.94), (89.38, 75.09),
                      (87.32, 96.95)),
    ("ff", "decolle"): ((92.74, 4.66), (89.88, 30.04), (88.14, 48.31), (85.12, 76.77),
                        (83.62, 90.80)),
    ("rec", "bptt"): ((96.43, 2.64), (94.19, 22.03), (92.24, 43.78), (91.22, 62.24),
                      (87.38, 90.73)),
    ("rec", "eprop"): ((96.69, 0.45), (94.81, 17.65), (91.92, 44.56), (88.51, 74.15),
                       (87.23, 93.15)),
    ("rec", "decolle"): ((90.21, 0.86), (87.41, 27.75), (81.55, 88.49), (81.29, 88.96),
                         (80.81, 91.02)),
}
