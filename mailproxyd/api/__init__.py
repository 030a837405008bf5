"""The HTTP API of the api worker (contract §4, §5): ``create_app(ctx) -> QuartTrio``."""

from mailproxyd.api.app import create_app

__all__ = ["create_app"]
