"""`python -m occulta ...`, the same as the `occulta` command."""

from occulta.cli import main

main()
