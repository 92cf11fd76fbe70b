"""Parameter presets (JSON data files)."""
