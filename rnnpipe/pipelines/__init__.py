"""The pipeline kinds, one package each: `forecast` (the kind `stocks`, and the monitor's channel
forecaster), `monitor`, `reviews` and `lm`. Each holds its settings (`config`), its torch-free
input checks (`data`), its preparation (`prepare`), its fitted artefact (`artefact`), its
baselines and evaluation, and its steps (`steps`); they stand on the shared core of `rnnpipe`
(io, features, models, training, evaluation, registry), which imports none of them."""
