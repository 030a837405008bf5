"""Command modules of ``mail-proxy``; each registers its commands on ``cli.apps`` at import.

The launcher imports every module in this package, so a new command group is one new module.
"""
