"""The search driver: config, search space, trials, serving, tracking and promotion."""
