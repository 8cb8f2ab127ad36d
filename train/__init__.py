"""PyTorch training pipeline for pyinspect (Kim, Noh & Park 2020). Run as ``python -m train``."""
