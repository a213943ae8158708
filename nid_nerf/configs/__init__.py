"""Method configs: the ``ns-train nid-field`` and ``ns-train nid-dict`` presets."""
