"""The deployment layer: the model bundle (``model.pt``) and its ONNX export."""
