"""``python -m mailproxyd.cli`` — the same as the ``mail-proxy`` command."""

from mailproxyd.cli.launcher import main

main()
