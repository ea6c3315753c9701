"""Config readers: the agent's config file, device profiles, pipeline files, YAML and shipped resources."""
