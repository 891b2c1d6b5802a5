"""The forecasting pipeline: the kind `stocks` (any series with a timestamp), and the channel
forecaster the monitor trains beside its classifier."""
