"""Config files read safely: a bound on size and on alias expansion, no tags but YAML's plain ones.

Hydra reads each config file with ``OmegaConf.load`` (PyYAML's safe loader). That refuses
``!!python/object`` tags, but late and in two lines, and it happily loads an alias bomb (a few
nested anchors, each repeating the one before ten times): PyYAML shares the aliased node, and it is
OmegaConf that copies it out, exponentially, until the process is killed. So every file Hydra
reads from a ``file://`` search path (conf/ and a user's ``hydra.searchpath`` folders) is first
scanned here as a stream of YAML events, which builds nothing: its size, the number of nodes it
would have once every alias is expanded, and its tags. A file over a bound is refused in one line
naming the file and the key path, before Hydra builds anything from it.

:func:`install` wraps Hydra's ConfigRepository.load_config (where every config file is read); the paths
of the files read are kept, so that an error Hydra reports by config path (``In 'experiment/x'``)
can name the file.
"""

from __future__ import annotations

import os
from typing import Any

from interp_pipeline.common.errors import ConfigError, shorten

# A config is kilobytes; OmegaConf takes seconds a megabyte to parse a long string for interpolations.
MAX_BYTES = int(os.environ.get("INTERP_PIPELINE_MAX_CONFIG_BYTES", 512_000))
MAX_NODES = int(os.environ.get("INTERP_PIPELINE_MAX_CONFIG_NODES", 200_000))
_PLAIN = "tag:yaml.org,2002:"
PLAIN_TAGS = {f"{_PLAIN}{name}" for name in ("str", "int", "float", "bool", "null", "map", "seq")} | {"!"}
LOADED: dict[str, str] = {}  # Hydra's config path ("experiment/mine") -> the file read for it


class UnsafeConfig(ConfigError):
    """A config file refused before it is built (exit status 2)."""


class _Frame:
    def __init__(self, kind: str, anchor: str | None, path: str):
        self.kind, self.anchor, self.path = kind, anchor, path
        self.size = 1
        self.key: str | None = None  # a mapping's current key, once read
        self.index = 0

    def child_path(self) -> str:
        if self.kind == "seq":
            return f"{self.path}[{self.index}]"
        return f"{self.path}.{self.key}" if self.path else str(self.key)


def check_yaml_text(text: str, where: str, *, max_bytes: int = MAX_BYTES, max_nodes: int = MAX_NODES) -> None:
    """Raise :class:`UnsafeConfig` naming ``where`` and the key path when ``text`` is too big, expands
    past ``max_nodes`` nodes through its aliases, or carries a tag other than YAML's plain ones."""
    import yaml

    size = len(text.encode("utf-8", errors="replace"))
    if size > max_bytes:
        raise UnsafeConfig(where, f"expected a config file of at most {max_bytes:,} bytes, found {size:,} "
                                  f"(INTERP_PIPELINE_MAX_CONFIG_BYTES raises the bound)")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    stack: list[_Frame] = []
    anchors: dict[str, int] = {}
    expanded = 0

    def path_here() -> str:
        if not stack:
            return "(top)"
        frame = stack[-1]
        if frame.kind == "map" and frame.key is None:
            return frame.path or "(top)"
        return frame.child_path()

    def add(node_size: int, anchor: str | None) -> None:
        """A scalar or an alias: counted as the values it expands to, then placed in its collection."""
        nonlocal expanded
        expanded += node_size
        if expanded > max_nodes:
            raise UnsafeConfig(f"{where}: {path_here()}", f"expected at most {max_nodes:,} values once its "
                                                          f"aliases are expanded, found more (a YAML alias bomb?)")
        place(node_size, anchor)

    def place(node_size: int, anchor: str | None) -> None:
        """A finished node: remembered by its anchor, added to its parent, which moves to its next slot."""
        if anchor:
            anchors[anchor] = node_size
        if stack:
            frame = stack[-1]
            frame.size += node_size
            if frame.kind == "seq":
                frame.index += 1
            else:
                frame.key = None

    def check_tag(event: Any) -> None:
        tag = getattr(event, "tag", None)
        if tag and tag not in PLAIN_TAGS:
            shown = tag.replace(_PLAIN, "!!")
            raise UnsafeConfig(f"{where}: {path_here()}", f"expected a plain YAML value, found the tag '{shown}' "
                                                          "(config files may use no tags but !!str, !!int, !!float, "
                                                          "!!bool, !!null)")

    try:
        for event in yaml.parse(text, Loader=loader):
            if isinstance(event, yaml.ScalarEvent):
                frame = stack[-1] if stack else None
                if frame is not None and frame.kind == "map" and frame.key is None:
                    frame.key = shorten(str(event.value), 40)  # a key: its value follows
                    check_tag(event)
                    continue
                check_tag(event)
                add(1, event.anchor)
            elif isinstance(event, yaml.AliasEvent):
                add(anchors.get(event.anchor, 1), None)
            elif isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                check_tag(event)
                kind = "map" if isinstance(event, yaml.MappingStartEvent) else "seq"
                stack.append(_Frame(kind, event.anchor, "" if not stack else path_here()))
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                frame = stack.pop()
                place(frame.size, frame.anchor)  # its values were counted as they came
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise UnsafeConfig(f"{where}: {path_here()}", f"expected valid YAML, found: {shorten(str(problem))}{at}") from None


def check_yaml_file(path: str) -> None:
    try:
        size = os.path.getsize(path)
    except OSError:
        return  # Hydra says what is missing
    if size > MAX_BYTES:
        raise UnsafeConfig(path, f"expected a config file of at most {MAX_BYTES:,} bytes, found {size:,} "
                                 f"(INTERP_PIPELINE_MAX_CONFIG_BYTES raises the bound)")
    with open(path, encoding="utf-8", errors="replace") as handle:
        check_yaml_text(handle.read(), path)


def install() -> None:
    """Scan every file Hydra reads from a file:// search path before it is built; idempotent.

    Wraps ConfigRepository.load_config, which picks the source a config path comes from: Hydra's
    plugin scan re-executes its core plugin modules (FileConfigSource among them), so a wrapper on
    that class would be lost."""
    from hydra._internal.config_repository import ConfigRepository

    if getattr(ConfigRepository.load_config, "_interp_checked", False):
        return
    original = ConfigRepository.load_config

    def load_config(self: Any, config_path: str) -> Any:
        from hydra.core.object_type import ObjectType

        source = self._find_object_source(config_path=config_path, object_type=ObjectType.CONFIG)
        if source is not None and source.scheme() == "file":
            full_path = os.path.realpath(os.path.join(source.path, source._normalize_file_name(config_path)))
            check_yaml_file(full_path)
            LOADED[config_path.removesuffix(".yaml")] = full_path
        return original(self, config_path)

    load_config._interp_checked = True  # type: ignore[attr-defined]
    ConfigRepository.load_config = load_config  # type: ignore[method-assign]


def file_of(config_path: str) -> str | None:
    """The file Hydra read for ``experiment/mine`` (None when it read none by that name)."""
    return LOADED.get(config_path.strip("/").removesuffix(".yaml"))


def file_defining(key: str) -> str | None:
    """Of the files read for this run, the one that sets ``key`` (a user's file before conf/'s); None if unknown."""
    import re

    from interp_pipeline.common.paths import conf_dir

    leaf = re.escape(key.rsplit(".", 1)[-1].split("[", 1)[0])
    ours = str(conf_dir().resolve())
    for path in sorted(LOADED.values(), key=lambda p: p.startswith(ours)):
        try:
            with open(path, encoding="utf-8", errors="replace") as handle:
                if re.search(rf"^\s*{leaf}\s*:", handle.read(MAX_BYTES), re.MULTILINE):
                    return path
        except OSError:
            continue
    return None
