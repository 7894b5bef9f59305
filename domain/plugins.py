"""The plugin API under the import path the 1.x documentation gives."""

from playbook.runtime.plugins import (  # noqa: F401
    FunctionSignature,
    ParameterDef,
    Plugin,
    PluginError,
    PluginMetadata,
)
