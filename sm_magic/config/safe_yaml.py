"""The one way sm_magic reads YAML: PyYAML's safe loader, bounded so that no file can cost more
than reading a config should (no aliases, bounded nesting, size and integer length)."""

from __future__ import annotations

import yaml

# A config file is a few hundred bytes: these bound what reading one may cost.
MAX_YAML_BYTES = 1 << 20
MAX_YAML_DEPTH = 32


class YamlRefused(yaml.MarkedYAMLError):
    """YAML that parses but that sm_magic will not read (an alias, deep nesting, a huge text)."""


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's SafeLoader, bounded: no aliases (`*name`, so no `<<: *name` either; accelerate
    never writes them, and a few hundred bytes of nested aliases expand to gigabytes), no nesting
    deeper than MAX_YAML_DEPTH (a deep document would exhaust the composer's recursion), and no
    integers too long to convert. Refused as the document is composed, before anything expands."""

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            raise YamlRefused(None, None, "an alias (*name): a config file holds no anchors or aliases "
                              "(write each value out)", self.peek_event().start_mark)
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise YamlRefused(None, None, f"nested more than {MAX_YAML_DEPTH} levels deep, which no config "
                                  "needs", self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_yaml_int(self, node):
        if len(node.value) > 40:
            raise YamlRefused(None, None, "an integer of more than 40 digits", node.start_mark)
        return super().construct_yaml_int(node)


_BoundedLoader.add_constructor("tag:yaml.org,2002:int", _BoundedLoader.construct_yaml_int)


def safe_yaml(text: str):
    """The one way sm_magic reads YAML (config files, the form's YAML fields): a safe loader that
    refuses aliases, deep nesting and text over MAX_YAML_BYTES, with yaml.YAMLError (a
    MarkedYAMLError with `problem` and `problem_mark`) for every refusal."""
    return compose_yaml(text)[0]


def compose_yaml(text: str):
    """(values, node) of a single-document YAML text, through _BoundedLoader."""
    if len(text) > MAX_YAML_BYTES:
        raise YamlRefused(problem=f"larger than {MAX_YAML_BYTES // 1024} KiB; a config is a few "
                                   "hundred bytes")
    loader = _BoundedLoader(text)
    try:
        node = loader.get_single_node()
        return (loader.construct_document(node) if node is not None else None), node
    finally:
        loader.dispose()
