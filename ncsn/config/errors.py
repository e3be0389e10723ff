"""The one exception type of the configuration."""


class ConfigError(ValueError):
    """A user error in the parameters: one line naming file, key, value and fix."""
