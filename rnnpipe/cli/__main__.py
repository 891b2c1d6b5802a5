"""`python -m rnnpipe.cli`."""

from rnnpipe.cli import main

main()
