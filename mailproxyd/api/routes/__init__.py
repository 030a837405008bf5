"""Route handlers, one module per area of the route catalogue (contract §4.6)."""
