"""A test plugin written against the seed's documented import path."""

import json

from playbook.domain.plugins import FunctionSignature, ParameterDef, Plugin, PluginMetadata


class EchoPlugin(Plugin):
    def get_metadata(self):
        return PluginMetadata(
            name="echo",
            version="0.1.0",
            author="Playbook tests",
            description="Returns its configuration and the typed parameters it was called with",
            functions={
                "show": FunctionSignature(
                    name="show",
                    description="Echo config and params as JSON",
                    parameters={
                        "i": ParameterDef(type="int", required=False, description="an integer"),
                        "f": ParameterDef(type="float", required=False, description="a float"),
                        "b": ParameterDef(type="bool", required=False, description="a flag"),
                        "l": ParameterDef(type="list", required=False, description="a list"),
                        "d": ParameterDef(type="dict", required=False, description="a mapping"),
                        "s": ParameterDef(type="str", required=False, description="a text"),
                    },
                )
            },
        )

    def initialize(self, config):
        self.config = dict(config)

    def execute(self, function_name, params):
        if function_name == "show":
            return json.dumps({"config": self.config, "params": params}, sort_keys=True)
        raise ValueError("unknown function %s" % function_name)

    def cleanup(self):
        pass
