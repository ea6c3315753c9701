"""The board: what device this is, its sensors, and the systemd sandbox its profile needs."""
