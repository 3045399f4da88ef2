"""The predictive context coder: integer volumes coded exactly (or within a promised error,
through quantize) without a network. Voxels are visited coarse to fine (pyramid), predicted
from their known neighbours (predictor, over windows of passes), and their residuals coded as
tokens (tokens) with ANS under tables chosen by context (contexts, tables); coder holds the
stream (laid out by streams) and its overview, and encode/decode are its entry points.
"""
