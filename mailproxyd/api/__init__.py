"""The HTTP API of the api worker (reference §4, §5): ``create_app(ctx) -> QuartTrio``."""

from mailproxyd.api.app import create_app

__all__ = ["create_app"]
