"""Search-space YAML files shipped with raycifar (found by name, e.g. `smoke_space`)."""
