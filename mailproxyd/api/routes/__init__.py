"""Route handlers, one module per area of the route catalogue (reference §4.6)."""


def load_all() -> None:
    """Fill the registry: each route module registers its handlers when imported."""
    from mailproxyd.api.routes import (  # noqa: F401
        accounts,
        commandlog,
        commands,
        events,
        instance,
        messages,
        system,
        tenants,
    )
