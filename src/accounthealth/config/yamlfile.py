"""Load YAML while remembering the line of every key, so errors can point at it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from accounthealth.errors import ConfigError

Path_ = tuple[str | int, ...]


@dataclass
class YamlDocument:
    """Parsed YAML data plus the line number (1-based) of each key path."""

    data: Any
    file: Path | None
    lines: dict[Path_, int] = field(default_factory=dict)

    def line_of(self, path: Path_) -> int | None:
        """Line of the deepest known prefix of ``path``."""
        for cut in range(len(path), -1, -1):
            line = self.lines.get(tuple(path[:cut]))
            if line is not None:
                return line
        return None

    def where(self, path: Path_) -> str:
        """'file:line at a.b.c' for error messages."""
        dotted = ".".join(str(p) for p in path) or "(top level)"
        line = self.line_of(path)
        loc = str(self.file) if self.file else "<yaml>"
        if line is not None:
            loc = f"{loc}:{line}"
        return f"{loc} at {dotted}"


def _build(node: yaml.Node, path: Path_, lines: dict[Path_, int]) -> Any:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = yaml.safe_load(yaml.serialize(key_node))
            # YAML reads `0:` or `-50%:` keys in bands as numbers or strings; keep them as text
            # in paths but as loaded in data.
            lines[(*path, str(key))] = key_node.start_mark.line + 1
            out[key] = _build(value_node, (*path, str(key)), lines)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, (*path, i), lines) for i, item in enumerate(node.value)]
    return yaml.safe_load(yaml.serialize(node))


def load_yaml(text: str, file: Path | None = None) -> YamlDocument:
    """Parse YAML text; a syntax error becomes a ConfigError with file and line."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{file or '<yaml>'}:{mark.line + 1}" if mark else str(file or "<yaml>")
        raise ConfigError(
            f"the file is not valid YAML ({getattr(exc, 'problem', exc)})",
            where=where,
            fix="check indentation and quoting on that line; quote values containing ': ' or '#'",
        ) from None
    lines: dict[Path_, int] = {}
    data = {} if node is None else _build(node, (), lines)
    return YamlDocument(data=data, file=file, lines=lines)


def load_yaml_file(file: Path) -> YamlDocument:
    """Read and parse a YAML file."""
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            "file not found", where=str(file), fix="create it or correct the path"
        ) from None
    return load_yaml(text, file)
