"""Rules for the chart's values as a whole: values.schema.json refuses what the templates would not
read (a typo, a key the chart dropped), and every value values.yaml documents reaches the output.

They read a `ChartValues` (the chart, its defaults and schema, the overrides of every render the
suite makes), not one render: a value matters in the render where its feature is on, so the
`values-read` rule renders the chart itself, once per value it changes.
"""
from __future__ import annotations

import base64
import copy
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

from swarm_checks import helm_render
from swarm_checks.errors import SwarmError
from swarm_checks.static.helm_rules import _merge, variants
from swarm_checks.static.rule import Rule, Violation

TYPO = "swarmTypoKey"
SENTINEL = "swarm-sentinel"
KeyPath = tuple[str, ...]


@dataclass(frozen=True)
class ChartValues:
    """The chart's values, their schema, and the overrides of each render the suite makes (the
    contexts a value may matter in: `everything-on` first)."""

    chart: Path
    defaults: Mapping[str, Any]
    schema: Mapping[str, Any]
    renders: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


def load_values(chart: Path) -> ChartValues:
    defaults = helm_render.default_values(chart)
    renders = variants(defaults)
    ordered = {"everything-on": renders.pop("everything-on"), **renders}
    return ChartValues(chart, defaults, json.loads((chart / "values.schema.json").read_text()), ordered)


def _dotted(path: KeyPath) -> str:
    return ".".join(path) or "(top level)"


def _resolve(node: Any, root: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The schema node and everything it stands for through local `$ref`s and `allOf`."""
    found: list[Mapping[str, Any]] = []
    stack = [node]
    while stack:
        current = stack.pop()
        if not isinstance(current, Mapping):
            continue
        found.append(current)
        ref = current.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/"):
            target: Any = root
            for part in ref[2:].split("/"):
                target = target.get(part, {}) if isinstance(target, Mapping) else {}
            stack.append(target)
        stack.extend(current.get("allOf") or [])
    return found


def _child(nodes: list[Mapping[str, Any]], key: str, root: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    children: list[Mapping[str, Any]] = []
    for node in nodes:
        if key in (node.get("properties") or {}):
            children += _resolve(node["properties"][key], root)
        elif isinstance(node.get("additionalProperties"), Mapping):
            children += _resolve(node["additionalProperties"], root)
    return children


def is_free_map(nodes: list[Mapping[str, Any]]) -> bool:
    """Declared as a free map (labels, annotations, nodeSelector, resources.requests, env): no
    fixed keys and an explicit `additionalProperties` schema (or true) for whatever keys come."""
    return bool(nodes) and not any("properties" in n for n in nodes) and any(n.get("additionalProperties") not in (None, False) for n in nodes)


def objects(values: ChartValues) -> Iterator[tuple[KeyPath, Mapping[str, Any], list[Mapping[str, Any]]]]:
    """(path, value, schema nodes) of every object of values.yaml, the top level first; free maps
    are yielded but not entered (their keys are data, not settings)."""
    root = values.schema
    stack: list[tuple[KeyPath, Mapping[str, Any], list[Mapping[str, Any]]]] = [((), values.defaults, _resolve(root, root))]
    while stack:
        path, value, nodes = stack.pop(0)
        yield path, value, nodes
        if is_free_map(nodes):
            continue
        for key, child in value.items():
            if isinstance(child, Mapping):
                stack.append(((*path, key), child, _child(nodes, key, root)))


def leaves(values: ChartValues) -> Iterator[tuple[KeyPath, Any, list[Mapping[str, Any]]]]:
    """(path, value, schema nodes) of every setting: a scalar, a list or a free map."""
    for path, value, nodes in objects(values):
        if is_free_map(nodes):
            continue
        for key, child in value.items():
            child_nodes = _child(nodes, key, values.schema)
            if not isinstance(child, Mapping) or is_free_map(child_nodes):
                yield (*path, key), child, child_nodes


def _with(defaults: Mapping[str, Any], path: KeyPath, value: Any) -> dict[str, Any]:
    result = copy.deepcopy(dict(defaults))
    node = result
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return result


def _without_nulls(value: Any) -> Any:
    """The value as Helm merges it: keys set to null are deleted."""
    return {k: _without_nulls(v) for k, v in value.items() if v is not None} if isinstance(value, Mapping) else value


def _validator(values: ChartValues) -> Any:
    import jsonschema

    return jsonschema.Draft202012Validator(values.schema)


def check_closed(values: ChartValues) -> Iterator[Violation]:
    """Every object of values.yaml whose keys are fixed refuses an unknown key (a typo fails the
    install instead of being ignored), and every key the schema declares there is in values.yaml
    (documented with its default). Objects declared as free maps (`is_free_map`) stay open.
    Validated with `jsonschema` (draft 2020-12), the schema Helm applies before rendering."""
    validator = _validator(values)
    error = next(iter(validator.iter_errors(values.defaults)), None)
    if error is not None:
        yield Violation("values (top level)", "values-closed", f"values.yaml fails values.schema.json at /{'/'.join(map(str, error.path))}: {error.message}")
        return
    for path, value, nodes in objects(values):
        if is_free_map(nodes):
            continue
        if validator.is_valid(_with(values.defaults, (*path, TYPO), "typo") if path else {**values.defaults, TYPO: "typo"}):
            yield Violation(f"values {_dotted(path)}", "values-closed",
                            f"an unknown key {TYPO!r} passes values.schema.json: set additionalProperties: false, or declare a free map (additionalProperties: a schema for its values)")
        declared = {key for node in nodes for key in node.get("properties") or {}}
        for key in sorted(declared - set(value)):
            yield Violation(f"values {_dotted((*path, key))}", "values-closed",
                            "values.schema.json accepts it but values.yaml does not set it: document it with its default, or drop it from the schema")


def _bumped(text: str) -> str | None:
    match = re.match(r"^([0-9]+)(.*)$", text)
    return f"{int(match.group(1)) + 1}{match.group(2)}" if match else None


def _example(nodes: list[Mapping[str, Any]], token: str, root: Mapping[str, Any]) -> Any:
    """A value the schema nodes accept, built from their types, enums and required keys."""
    for node in nodes:
        if node.get("enum"):
            return node["enum"][0]
    kinds = {k for node in nodes for k in ([node["type"]] if isinstance(node.get("type"), str) else node.get("type") or [])}
    if "object" in kinds:
        required = {key for node in nodes for key in node.get("required") or []}
        return {key: _example(_child(nodes, key, root), token, root) for key in sorted(required)}
    if "array" in kinds:
        return []
    if "integer" in kinds or "number" in kinds:
        return max([1, *(node["minimum"] for node in nodes if isinstance(node.get("minimum"), (int, float)))])
    if "boolean" in kinds:
        return True
    return token


def _candidates(path: KeyPath, value: Any, nodes: list[Mapping[str, Any]], siblings: Mapping[str, Any], token: str,
                root: Mapping[str, Any] | None = None) -> Iterator[Any]:
    """Changes of one value, the most telling first; the caller keeps the first the schema accepts."""
    if isinstance(value, bool):
        yield not value
    elif isinstance(value, int):
        yield from (value + 1, value - 1)
    elif isinstance(value, float):
        yield from (round(value / 2, 4), round(value + 0.01, 4))
    elif isinstance(value, str):
        yield token
        if _bumped(value):
            yield _bumped(value)
        yield from (v for node in nodes for v in node.get("enum") or [] if v != value)
    elif isinstance(value, list):
        if value:
            yield from (value[:-1], [*value, copy.deepcopy(value[-1])])
        else:
            items = [i for node in nodes if isinstance(node.get("items"), Mapping) for i in _resolve(node["items"], root or {})]
            yield from ([_example(items, token, root or {})] if items else [], [token], [{"name": token}])
    elif isinstance(value, Mapping):
        if value:
            first = next(iter(value))
            yield {**value, first: next(_candidates((*path, first), value[first], [], {}, token), token)}
            yield {**value, first: None}  # Helm deletes a key set to null (an empty map would merge)
        else:
            extra = [a for node in nodes if isinstance(node.get("additionalProperties"), Mapping) for a in _resolve(node["additionalProperties"], root or {})]
            yield {f"{token}-key": _example(extra, token, root or {}) if extra else token}
            # A map keyed by names the templates look up (securityExceptions.runAsNonRoot by component).
            for sibling in siblings.values():
                if isinstance(sibling, Mapping) and sibling and sibling is not value:
                    yield {next(iter(sibling)): f"{token} reason"}


def _flatten(manifests: list[Mapping[str, Any]]) -> dict[str, Any]:
    flat: dict[str, Any] = {}

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, Mapping):
            for key, child in node.items():
                walk(f"{prefix}.{key}", child)
        elif isinstance(node, list):
            for index, child in enumerate(node):
                walk(f"{prefix}[{index}]", child)
        else:
            flat[prefix] = node

    for doc in manifests:
        walk(f"{doc.get('kind')}/{(doc.get('metadata') or {}).get('name')}", doc)
    return flat


def _text(manifests: list[Mapping[str, Any]]) -> str:
    """The manifests as text, Secret data decoded, to find a sentinel in."""
    parts = [json.dumps(manifests, default=str)]
    for doc in manifests:
        for encoded in (doc.get("data") or {}).values() if doc.get("kind") == "Secret" else ():
            try:
                parts.append(base64.b64decode(str(encoded)).decode())
            except (ValueError, UnicodeDecodeError):
                continue
    return "\n".join(parts)


class _Base:
    """One render context: its overrides, its output, and the paths that differ between two
    renders of the same values (generated passwords, the checksum of the Secret)."""

    def __init__(self, values: ChartValues, overrides: Mapping[str, Any]) -> None:
        self.values, self.overrides = values, overrides
        first = helm_render.render(values.chart, overrides)
        self.flat = _flatten(first)
        again = _flatten(helm_render.render(values.chart, overrides))
        self.noise = {k for k in set(self.flat) | set(again) if self.flat.get(k) != again.get(k)}

    def reads(self, path: KeyPath, changed: Any, sentinel: str | None) -> bool:
        overrides = _merge(copy.deepcopy(dict(self.overrides)), _nested(path, changed))
        try:
            manifests = helm_render.render(self.values.chart, overrides)
        except SwarmError as error:
            return "a template fails" in str(error)  # a `required` or `fail` reacting to the value
        if sentinel and sentinel in _text(manifests):
            return True
        flat = _flatten(manifests)
        return any(flat.get(k) != self.flat.get(k) for k in (set(flat) | set(self.flat)) - self.noise)


def _nested(path: KeyPath, value: Any) -> dict[str, Any]:
    result: dict[str, Any] = {}
    node = result
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = copy.deepcopy(value)
    return result


def check_read(values: ChartValues) -> Iterator[Violation]:
    """Every setting of values.yaml (a scalar, a list or a free map) changes the rendered output
    when it changes, in at least one of the suite's renders (`everything-on` first, then each flag
    flipped, each choice, each scenario): a value no template reads is a promise the chart breaks.

    Each setting gets the first change the schema accepts (a sentinel string, a number one higher,
    a flag flipped, a list shortened, a map emptied or given a key) and counts as read when that
    render differs from the unchanged one outside generated passwords, shows the sentinel (Secret
    data decoded), or fails in a template (`required`). Limits: a value read only under a
    combination of values no render makes is reported; a value read but mapped to the same output
    for both the default and the changed value (a `default` of the same) is reported too; and a
    value whose only readers are outside the chart (the static suite's exception reasons) is
    judged as the map that holds it, not key by key."""
    validator = _validator(values)
    changes: dict[KeyPath, tuple[str, list[Any]]] = {}
    for index, (path, value, nodes) in enumerate(leaves(values)):
        token = f"{SENTINEL}-{index}"
        parent = values.defaults
        for part in path[:-1]:
            parent = parent[part]
        accepted = [c for c in _candidates(path, value, nodes, parent, token, values.schema) if validator.is_valid(_with(values.defaults, path, _without_nulls(c)))]
        if not accepted:
            yield Violation(f"values {_dotted(path)}", "values-read", "no change of it passes values.schema.json: cannot tell whether a template reads it")
        else:
            changes[path] = (token, accepted)
    # Every sentinel string at once in the first render: those that show in it are read. The rest,
    # one change per render, render after render.
    batch: dict[str, Any] = {}
    for path, (token, accepted) in changes.items():
        if accepted[0] == token:
            _merge(batch, _nested(path, token))
    first = next(iter(values.renders.values()), {})
    try:
        text = _text(helm_render.render(values.chart, _merge(copy.deepcopy(dict(first)), batch))) if batch else ""
    except SwarmError:
        text = ""
    pending = {path: change for path, change in changes.items() if not (text and change[0] in text and change[1][0] == change[0])}
    bases: dict[str, _Base] = {}
    for path, (token, accepted) in pending.items():
        found = False
        for name, overrides in values.renders.items():
            if name not in bases:
                bases[name] = _Base(values, overrides)
            if any(bases[name].reads(path, changed, token if token in json.dumps(changed) else None) for changed in accepted):
                found = True
                break
        if not found:
            yield Violation(f"values {_dotted(path)}", "values-read",
                            f"no template reads it: setting it to {json.dumps(accepted[0])} changes no render of the suite; wire it or drop it (values.yaml and values.schema.json)")


RULES: tuple[Rule[ChartValues], ...] = (
    Rule("values-closed", "values.schema.json refuses unknown keys outside free maps and declares nothing values.yaml lacks", check_closed),
    Rule("values-read", "every setting of values.yaml changes some render of the chart", check_read),
)
