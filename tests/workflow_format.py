"""ComfyUI's UI workflow format read the way the frontend reads it, against node declarations.

A UI workflow stores each node's widget values as a list in declaration order (required, then optional
inputs, widgets only), with one extra value after a seed-like INT for "control after generate". Reading
it against `INPUT_TYPES` catches every change that would silently shift or break a saved workflow, and
gives the API-format prompt that ComfyUI's server runs.
"""

from __future__ import annotations

WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
FRONTEND_ONLY = {"Note", "MarkdownNote", "Reroute"}


def _options(spec) -> dict:
    return spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}


def is_widget(spec) -> bool:
    return (isinstance(spec[0], list) or spec[0] in WIDGET_TYPES) and not _options(spec).get("forceInput")


def has_control_value(name: str, spec) -> bool:
    """A seed-like INT is followed by its "control after generate" value; an upload combo (LoadImage's) by the
    upload button's."""
    if _options(spec).get("image_upload"):
        return True
    return spec[0] == "INT" and (name in ("seed", "noise_seed") or bool(_options(spec).get("control_after_generate")))


def declared_inputs(declaration: dict) -> list[tuple[str, tuple, bool]]:
    """(name, spec, required) in declaration order."""
    inputs = declaration["input"]
    return [(name, tuple(spec), kind == "required") for kind in ("required", "optional")
            for name, spec in inputs.get(kind, {}).items()]


def widget_values(node: dict, declaration: dict) -> dict:
    """Widget name -> value for a UI-format node; raises ValueError when the count does not match."""
    values = list(node.get("widgets_values") or [])
    widgets = [(name, spec) for name, spec, _ in declared_inputs(declaration) if is_widget(spec)]
    expected = len(widgets) + sum(has_control_value(name, spec) for name, spec in widgets)
    if len(values) != expected:
        raise ValueError(f"node {node['id']} ({node['type']}) has {len(values)} widget values, expected {expected}")
    result = {}
    for name, spec in widgets:
        result[name] = values.pop(0)
        if has_control_value(name, spec):
            values.pop(0)
    return result


def check_value(name: str, spec, value) -> str | None:
    """Why `value` is not acceptable for the widget, or None."""
    kind, options = spec[0], _options(spec)
    if isinstance(kind, list) or kind == "COMBO":
        choices = kind if isinstance(kind, list) else options.get("options", [])
        return None if value in choices else f"{name}={value!r} is not one of {choices}"
    checks = {"INT": lambda v: isinstance(v, int) and not isinstance(v, bool),
              "FLOAT": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
              "BOOLEAN": lambda v: isinstance(v, bool), "STRING": lambda v: isinstance(v, str)}
    if not checks[kind](value):
        return f"{name}={value!r} is not a {kind}"
    if kind in ("INT", "FLOAT") and not options.get("min", value) <= value <= options.get("max", value):
        return f"{name}={value} is outside {options.get('min')}..{options.get('max')}"
    return None


def to_api_prompt(workflow: dict, declarations: dict) -> dict:
    """The API-format prompt {id: {class_type, inputs}} the server runs for a UI-format workflow."""
    links = {link[0]: link for link in workflow["links"]}
    prompt = {}
    for node in workflow["nodes"]:
        if node["type"] in FRONTEND_ONLY:
            continue
        inputs = dict(widget_values(node, declarations[node["type"]]))
        for socket in node.get("inputs", []):
            if socket.get("link") is not None:
                _, source, slot, *_ = links[socket["link"]]
                inputs[socket["name"]] = [str(source), slot]
        prompt[str(node["id"])] = {"class_type": node["type"], "inputs": inputs}
    return prompt
