"""PyTorch side: FP Segmenter, loaders, quantization (PTQ/QAT), training and evaluation."""
