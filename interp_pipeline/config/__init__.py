"""Structured-config schemas (one dataclass per concern) registered in Hydra's ConfigStore."""
