"""Exports of a model + sidecar to serving formats; ``triton``: a Triton model repository.

``pyinspect export triton MODEL --out REPO`` (``pyinspect.export.triton``). The runtime never
imports this package; it needs ``onnx`` (a core dependency) and, to validate the written
configurations, ``tritonclient`` (``pip install pyinspect[serve]``).
"""
