"""Exports of a model + sidecar to serving formats; ``triton``: a Triton model repository;
``fullframe``: a student as one whole-frame ONNX graph (conv1–4 shared over the frame).

``pyinspect export triton MODEL --out REPO`` (``pyinspect.export.triton``);
``pyinspect.export.fullframe.fullframe_graph(MODEL, height=, width=)``. The runtime never
imports this package; it needs ``onnx`` (a core dependency) and, to validate the written
configurations, ``tritonclient`` (``pip install pyinspect[serve]``).
"""
