"""Pieces of the supervisor: the worker link, restart back-off, the worker table.

``mailproxyd.supervisor`` wires them together; worker processes use ``channel``.
"""
