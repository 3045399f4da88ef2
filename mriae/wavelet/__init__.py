"""The wavelet transform coder: lossy 3D volumes at a step (for PSNR targets), without a network.

A volume is transformed by the 3D CDF 9/7 wavelet (transform), its coefficients quantized
with a deadzone (quantize) and coded band by band, coarse to fine, with contexts from the
already decoded parent, sibling and neighbouring coefficients (contexts) under parametric
tables (model); coder holds the stream, and encode/decode are its entry points.
"""
