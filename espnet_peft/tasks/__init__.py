"""PEFT variants of ESPnet tasks (module-level classes, so DDP worker processes can import them)."""
