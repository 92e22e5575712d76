"""`python -m occulta` is the `occulta` command."""

from occulta.cli import main

main()
