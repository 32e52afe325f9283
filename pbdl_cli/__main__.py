"""`python -m pbdl_cli` is the same as the `pbdl` command."""

from pbdl_cli.cli import main

main()
