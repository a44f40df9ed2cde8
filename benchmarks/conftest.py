import torch


def pytest_configure(config):
    torch.set_num_threads(2)  # the reference machine: 2 cores
