"""rnnpipe: sequence data in, trained, tracked and served recurrent models out.

The library imports no orchestration (Prefect) and no CLI framework: every function here can be
used from a notebook. `rnnpipe.flows` (with its tasks, `rnnpipe.flows.tasks`) wires it into
Prefect (the only package that imports it); `rnnpipe.cli` is the CLI.
"""

__version__ = "0.1.0"
