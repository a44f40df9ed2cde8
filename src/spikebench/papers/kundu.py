"""HIRE-SNN (Kundu et al., ICCV 2021) and attention-guided compression (AGC; Kundu et al.,
WACV 2021): the published figures beside which compress-robust's report puts ours."""

# the papers' figures (CIFAR; HIRE: talk slides, white-box; AGC: WACV 2021)
REFERENCE = {
    "standard": "–",
    "hire": "clean / FGSM / PGD, C10 VGG5: 87.5 / 38.0 / 9.1 (+2.5 / +3.8 vs trad. SNN), "
            "C10 ResNet12: 90.3 / 33.3 / 3.8 (+12.2 / +3.5), C100 VGG11: 65.1 / 22.0 / 7.5 "
            "(+5.7 / +4.6)",
    "agc": "C10 VGG16: 2.5x 91.29 %, 33.4x 90.15 % (T=100)",
    "hire+agc": "– (not in the papers)",
    "agc-unguided": "– (AGC's point: without the guidance, BatchNorm-free compressed "
                    "training fails; no figure)",
}
# the claims compress-robust's findings test, as the papers make them
CLAIMS = {
    "hire": "HIRE-SNN training raises robust accuracy over standard (hybrid) training at "
            "no extra training time",
    "latency": "direct-input HIRE-SNNs at low latency are similarly or more robust than "
               "rate-coded SNNs at up to 25x higher latency, at ~4.6x lower compute",
    "guidance": "attention guidance by an uncompressed meta-ANN is what lets a compressed, "
                "BatchNorm-free ANN train (and its SNN keep accuracy)",
    "compression": "up to 33.4x compression at near-baseline accuracy",
}
