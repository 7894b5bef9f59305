"""Configuration: files in the seed's discovery order, environment sections and overrides.

Discovery: `PLAYBOOK_CONFIG` if set; else `./playbook.toml`, `~/.config/playbook/config.toml`,
`/etc/playbook/config.toml`, the first listed winning key by key. `PLAYBOOK_ENV=NAME` overlays
the `[environments.NAME]` tables of every file. Environment variables override everything.
"""

import os

DEFAULTS = {
    "database": {"path": "~/.config/playbook/run.db", "timeout": 30, "backup_enabled": True, "backup_count": 5},
    "execution": {"default_timeout": 300, "max_retries": 3, "interactive_timeout": 1800, "parallel_execution": 1},
    "logging": {"level": "INFO", "file_path": "", "max_size_mb": 10, "backup_count": 3},
    "ui": {"progress_style": "bar", "color_theme": "auto", "show_timestamps": True, "compact_output": False},
}

ENV_OVERRIDES = {
    "PLAYBOOK_DB_PATH": ("database", "path", str),
    "PLAYBOOK_MAX_RETRIES": ("execution", "max_retries", int),
    "PLAYBOOK_DEFAULT_TIMEOUT": ("execution", "default_timeout", float),
    "PLAYBOOK_PARALLEL": ("execution", "parallel_execution", int),
    "PLAYBOOK_LOG_LEVEL": ("logging", "level", str),
    "PLAYBOOK_LOG_FILE": ("logging", "file_path", str),
}


class ConfigError(Exception):
    pass


def candidates(environ=None, cwd=None):
    environ = os.environ if environ is None else environ
    if environ.get("PLAYBOOK_CONFIG"):
        return [environ["PLAYBOOK_CONFIG"]]
    return [
        os.path.join(cwd or os.getcwd(), "playbook.toml"),
        os.path.expanduser("~/.config/playbook/config.toml"),
        "/etc/playbook/config.toml",
    ]


def _load_toml(path):
    try:
        import tomllib as toml
    except ImportError:  # Python < 3.11
        import tomli as toml
    with open(path, "rb") as handle:
        return toml.load(handle)


class Config:
    def __init__(self, values, origins):
        self.values = values
        self.origins = origins  # "section.key" -> where the value came from

    def get(self, section, key):
        return self.values[section][key]


def load(environ=None, cwd=None):
    """The effective configuration; raises ConfigError naming the file for bad files."""
    environ = os.environ if environ is None else environ
    values = {s: dict(keys) for s, keys in DEFAULTS.items()}
    origins = {"%s.%s" % (s, k): "default" for s, keys in DEFAULTS.items() for k in keys}
    env_name = environ.get("PLAYBOOK_ENV")
    explicit = bool(environ.get("PLAYBOOK_CONFIG"))
    layers = []
    for path in candidates(environ, cwd):
        if not os.path.isfile(path):
            if explicit:
                raise ConfigError("PLAYBOOK_CONFIG=%s: no such file" % path)
            continue
        if os.path.basename(path) == "playbook.toml" and not explicit:
            # ./playbook.toml may be a runbook folder's own file: only use it when it has config sections
            pass
        try:
            data = _load_toml(path)
        except (OSError, ValueError) as exc:
            raise ConfigError("%s: %s" % (path, exc)) from None
        layers.append((path, data))
    # lowest priority first: the system file, then user, then local
    for path, data in reversed(layers):
        _apply(values, origins, data, path)
        if env_name:
            section = (data.get("environments") or {}).get(env_name)
            if isinstance(section, dict):
                _apply(values, origins, section, "%s [environments.%s]" % (path, env_name))
    for name, (section, key, kind) in ENV_OVERRIDES.items():
        if environ.get(name):
            try:
                values[section][key] = kind(environ[name])
            except ValueError:
                raise ConfigError("%s=%r is not a valid %s" % (name, environ[name], kind.__name__)) from None
            origins["%s.%s" % (section, key)] = "environment %s" % name
    return Config(values, origins)


def _apply(values, origins, data, where):
    for section, keys in data.items():
        if section == "environments":
            continue
        if section not in DEFAULTS:
            raise ConfigError("%s: unknown section [%s] (known: %s)" % (where, section, ", ".join(DEFAULTS)))
        if not isinstance(keys, dict):
            raise ConfigError("%s: [%s] must be a table" % (where, section))
        for key, value in keys.items():
            if key not in DEFAULTS[section]:
                raise ConfigError("%s: unknown key %s.%s" % (where, section, key))
            default = DEFAULTS[section][key]
            if isinstance(default, bool) != isinstance(value, bool) or (
                isinstance(default, (int, float)) and not isinstance(value, (int, float))
            ) or (isinstance(default, str) and not isinstance(value, str)):
                raise ConfigError("%s: %s.%s must be %s" % (where, section, key, type(default).__name__))
            values[section][key] = value
            origins["%s.%s" % (section, key)] = where
