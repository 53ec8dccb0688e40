"""The order flow's side of the measurements: its services started the way the lab runs them."""
