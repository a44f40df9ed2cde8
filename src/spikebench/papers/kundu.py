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
}
