"""The ParaLIF hybrid study (ResNet/ViT encoders with spiking heads): its published
accuracies, beside which the hybrid suites' report puts ours."""

# (dataset, encoder) -> default / LIF / ParaLIF head, test accuracy (%)
REFERENCE = {
    ("fashion-mnist", "resnet18"): ("93.2", "93.7", "91.5 ± 0.08"),
    ("fashion-mnist", "resnet50"): ("93.2", "93.4", "92.5 ± 0.14"),
    ("cifar10", "resnet18"): ("92.4", "92.8", "90.9 ± 0.15"),
    ("cifar10", "resnet50"): ("94.7", "94.8", "94.4 ± 0.034"),
    ("cifar100", "resnet18"): ("73.3", "74.3", "34.9 ± 0.08"),
    ("cifar100", "resnet50"): ("77.9", "79.4", "52.9 ± 0.14"),
}
