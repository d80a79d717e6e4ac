"""The closed loop on one machine: the demo, its benchmark and its end-to-end tests share this package."""
