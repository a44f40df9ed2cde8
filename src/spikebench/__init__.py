"""spikebench: learning rules of varying locality for spiking networks, on one harness."""

__version__ = "0.1.0"
