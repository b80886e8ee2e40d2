"""``python -m mnp``: the same as the ``mnp`` command."""

from mnp.cli.main import main

main()
