"""Splits, scalers, targets and windows: everything between a validated table and tensors.

Fitted state follows scikit-learn: `fit` on the training part only, attributes ending in `_`.
"""
