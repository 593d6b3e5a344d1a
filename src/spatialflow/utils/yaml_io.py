"""Reading YAML settings strictly: one line naming the file and the problem, never a silent surprise.

PyYAML's ``safe_load`` lets the last of two equal keys in one mapping win without a word, and expands
aliases lazily, so a few lines of nested aliases ("billion laughs") become billions of nodes for whatever
walks the result (OmegaConf, DVC, a deep copy). :func:`read_yaml` refuses both, and an input nested deeper
than any settings file is, before Python's recursion limit is reached. Anchors and aliases used to share
a block (as params.yaml does) stay allowed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from spatialflow.errors import ConfigError

MAX_EXPANDED_NODES = 200_000  # params.yaml expands to a few thousand
MAX_DEPTH = 64


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor`: later keys override, as YAML says
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node.start_mark.line + 1)
            except TypeError:  # an unhashable key: SafeLoader reports it below
                continue
            if first != key_node.start_mark.line + 1:
                raise ConfigError(f"line {key_node.start_mark.line + 1}: key {key!r} given twice in one mapping "
                                  f"(first on line {first}); keep one")
        return super().construct_mapping(node, deep=deep)


def _check_size(root: yaml.Node) -> None:
    """Refuse a document whose aliases expand to more than MAX_EXPANDED_NODES nodes, or nested deeper than
    MAX_DEPTH (counted on the node graph, once per distinct node, so the check itself stays cheap)."""
    expanded: dict[int, int] = {}
    depth: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if key in expanded:
            continue
        children = []
        if isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        if not done:
            stack.append((node, True))
            stack.extend((child, False) for child in children if id(child) not in expanded)
            if len(stack) > MAX_EXPANDED_NODES:
                raise ConfigError(f"more than {MAX_EXPANDED_NODES} nodes; not a settings file")
            continue
        expanded[key] = 1 + sum(expanded.get(id(child), 0) for child in children)
        depth[key] = 1 + max((depth.get(id(child), 0) for child in children), default=0)
        if expanded[key] > MAX_EXPANDED_NODES:
            raise ConfigError(f"its aliases expand to more than {MAX_EXPANDED_NODES} nodes (an alias bomb?); "
                              "refused")
        if depth[key] > MAX_DEPTH:
            raise ConfigError(f"nested more than {MAX_DEPTH} levels deep; not a settings file")


def parse_yaml(text: str, source: str) -> Any:
    """Parse YAML text strictly; errors are :class:`ConfigError` ``"<source>: <problem>"``."""
    loader = _StrictLoader(text)
    try:
        try:
            node = loader.get_single_node()
        except RecursionError:
            raise ConfigError(f"nested more than {MAX_DEPTH} levels deep; not a settings file") from None
        if node is None:
            return None
        _check_size(node)
        return loader.construct_document(node)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError(f"{source}: not valid YAML ({where}{exc.problem or exc.context})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML ({' '.join(str(exc).split())})") from None
    finally:
        loader.dispose()


def read_yaml(path: str | os.PathLike) -> Any:
    """Read a YAML file strictly (see the module docstring). A missing or non-UTF-8 file is one line too."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder; expected a YAML file") from None
    return parse_yaml(text, str(path))
