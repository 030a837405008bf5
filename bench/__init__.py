"""The mail-proxy benchmarks (``python -m bench``).

Each ``bench/<name>.py`` measures one part against a plain baseline and prints its figures;
``bench/__main__.py`` runs every one that is present, in a fixed order.
"""
