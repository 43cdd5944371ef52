"""iseg-host: the host driver (board backends and the emulated board)."""
