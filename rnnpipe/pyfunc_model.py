"""Entry file of the logged pyfunc models ("models from code"): MLflow runs this file when it
loads a model, so no Python object is pickled into the model directory."""

from mlflow.models import set_model

from rnnpipe.registry import PipelinePyfunc

set_model(PipelinePyfunc())
