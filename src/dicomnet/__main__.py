"""``python -m dicomnet``: the ``dicomnet`` command."""

from dicomnet.cli.main import main

main()
