"""Route handlers, one module per area of the route catalogue (reference §4.6)."""
