"""The export's choices as data, importable without torch: the command line parses and answers ``--help`` before
torch is imported (importing it takes seconds)."""

EXPORTERS = ("auto", "torchscript", "dynamo")  # what a caller may ask for (convert.to_onnx)
# Formats written beside model.pt and model.onnx (always written): by default every one, .pt2 and .pte wherever they
# pass (a toolchain that is not installed is recorded and said once); ``formats=`` names those that must.
FORMATS = ("ort", "pt2", "pte")
