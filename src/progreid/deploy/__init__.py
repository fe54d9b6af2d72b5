"""The deployment layer: the model bundle (``model.pt``, ``model.safetensors``), its ONNX and
``torch.export`` export, and the Python API (:func:`progreid.load`: PyTorch or onnxruntime)."""
