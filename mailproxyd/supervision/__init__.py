"""Pieces of the supervisor: the worker link, restart back-off, the worker table, logging.

``mailproxyd.supervisor`` wires them together; worker processes use ``channel`` and ``logsetup``.
"""
