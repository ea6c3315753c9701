"""Frame -> model tensor (preprocess) and raw model outputs -> results (decoders, nms)."""
