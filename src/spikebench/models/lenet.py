"""LeNet-5 (LeCun et al. 1998) for 28x28 images, the encoder of the small hybrids:
conv 6@5x5 (padding 2) - max-pool - conv 16@5x5 - max-pool - fc 120 - fc 84, ReLU;
``features`` is the 84-d output, the default head ``fc3`` maps it to the classes."""

from __future__ import annotations

import torch
from torch import nn


class LeNet5(nn.Module):
    def __init__(self, num_classes: int = 10, in_channels: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 6, 5, padding=2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)
        self.feature_dim = 84

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (28, 28):
            raise ValueError(f"LeNet-5 expects 28x28 images, got {tuple(x.shape[-2:])}")
        x = torch.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = torch.max_pool2d(torch.relu(self.conv2(x)), 2)
        return torch.relu(self.fc2(torch.relu(self.fc1(x.flatten(1)))))

    def head(self) -> nn.Module:
        return self.fc3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc3(self.features(x))
