"""I-Segmenter integer-only FPGA toolchain: reference, checkpoint, generator, host."""

__version__ = "0.1.0"
