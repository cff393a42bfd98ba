"""The base every pipelines wing, judges and search may import: bad-input errors, the secret mask, reading what a
user gives (files, text in any encoding, strict YAML), registries of named choices, progress lines. It imports
nothing else of ragsweep."""
