"""raycifar: find the best CIFAR classifier under a parameter budget with Ray Tune + Ray Train."""

__version__ = "0.1.0"
