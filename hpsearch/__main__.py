"""`python -m hpsearch`: the same command line as `hpsearch` (workers are started this way)."""

from hpsearch.cli import main

main()
