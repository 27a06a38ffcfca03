"""The JSON-schema subset function tools use: validating arguments, deriving schemas from hints.

Models produce arguments that are usually, not always, what the schema says; each problem is
reported as one readable line (``$.card: expected string``) so the model can correct itself.
Supported keywords: ``type`` (object, string, integer, number, boolean, array, null, or a list
of them), ``properties``, ``required``, ``additionalProperties`` (boolean or schema), ``items``,
``enum``, ``const``, ``minimum``/``maximum``, ``minLength``/``maxLength``, ``pattern``,
``minItems``/``maxItems``. Other keywords (``$ref``, ``anyOf``, formats…) are not checked: an
MCP server validates its own arguments again anyway.
"""

from __future__ import annotations

import inspect
import re
import types
import typing
from collections.abc import Callable
from typing import Any, Literal

_MAX_ERRORS = 5

_JSON_TYPES: dict[str, Callable[[Any], bool]] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    # JSON has one number type: 3.0 is an integer, True is not a number.
    "integer": lambda v: (
        not isinstance(v, bool)
        and (isinstance(v, int) or (isinstance(v, float) and v.is_integer()))
    ),
    "number": lambda v: not isinstance(v, bool) and isinstance(v, int | float),
}


class SchemaError(ValueError):
    """A tool's declared schema is unusable (a configuration error, not the model's)."""


def validate(schema: dict[str, Any], value: Any) -> list[str]:
    """Problems of ``value`` against ``schema``, at most a handful, each naming its path."""
    errors: list[str] = []
    _check(schema, value, "$", errors)
    return errors[:_MAX_ERRORS]


def _check(schema: Any, value: Any, path: str, errors: list[str]) -> None:
    if not isinstance(schema, dict) or len(errors) >= _MAX_ERRORS:
        return
    kinds = schema.get("type")
    if kinds is not None:
        names = [kinds] if isinstance(kinds, str) else list(kinds)
        if not any(_JSON_TYPES.get(name, lambda _: True)(value) for name in names):
            errors.append(f"{path}: expected {' or '.join(names)}, got {_json_type(value)}")
            return
    if "enum" in schema and value not in schema["enum"]:
        allowed = ", ".join(repr(v) for v in schema["enum"])
        errors.append(f"{path}: {value!r} is not one of {allowed}")
        return
    if "const" in schema and value != schema["const"]:
        errors.append(f"{path}: must be {schema['const']!r}")
        return
    if isinstance(value, dict):
        _check_object(schema, value, path, errors)
    elif isinstance(value, list):
        _check_array(schema, value, path, errors)
    elif isinstance(value, str):
        _check_string(schema, value, path, errors)
    elif _JSON_TYPES["number"](value):
        _check_number(schema, value, path, errors)


def _check_object(
    schema: dict[str, Any], value: dict[str, Any], path: str, errors: list[str]
) -> None:
    properties = schema.get("properties") or {}
    for name in schema.get("required") or ():
        if name not in value:
            errors.append(f"{path}: missing required property {name!r}")
    extra = schema.get("additionalProperties", True)
    for name, item in value.items():
        if name in properties:
            _check(properties[name], item, f"{path}.{name}", errors)
        elif extra is False:
            errors.append(f"{path}: unexpected property {name!r}")
        elif isinstance(extra, dict):
            _check(extra, item, f"{path}.{name}", errors)


def _check_array(schema: dict[str, Any], value: list[Any], path: str, errors: list[str]) -> None:
    if "minItems" in schema and len(value) < schema["minItems"]:
        errors.append(f"{path}: needs at least {schema['minItems']} items")
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        errors.append(f"{path}: allows at most {schema['maxItems']} items")
    items = schema.get("items")
    if isinstance(items, dict):
        for index, item in enumerate(value):
            _check(items, item, f"{path}[{index}]", errors)


def _check_string(schema: dict[str, Any], value: str, path: str, errors: list[str]) -> None:
    if "minLength" in schema and len(value) < schema["minLength"]:
        errors.append(f"{path}: shorter than {schema['minLength']} characters")
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        errors.append(f"{path}: longer than {schema['maxLength']} characters")
    pattern = schema.get("pattern")
    if isinstance(pattern, str):
        try:
            matched = re.search(pattern, value) is not None
        except re.error:
            return  # An unusable pattern is the schema's problem, not the model's.
        if not matched:
            errors.append(f"{path}: {value!r} does not match {pattern!r}")


def _check_number(schema: dict[str, Any], value: float, path: str, errors: list[str]) -> None:
    if "minimum" in schema and value < schema["minimum"]:
        errors.append(f"{path}: {value} is below the minimum {schema['minimum']}")
    if "maximum" in schema and value > schema["maximum"]:
        errors.append(f"{path}: {value} is above the maximum {schema['maximum']}")


def _json_type(value: Any) -> str:
    for name in ("null", "boolean", "integer", "number", "string", "array", "object"):
        if _JSON_TYPES[name](value):
            return name
    return type(value).__name__


def check_parameters_schema(schema: Any, where: str) -> dict[str, Any]:
    """``schema`` if it can describe a tool's arguments (an object schema), else SchemaError."""
    if not isinstance(schema, dict) or schema.get("type") != "object":
        raise SchemaError(f"{where}: the parameters schema must be an object schema")
    properties = schema.get("properties", {})
    if not isinstance(properties, dict):
        raise SchemaError(f"{where}: 'properties' must be an object")
    required = schema.get("required", [])
    if not isinstance(required, list) or any(name not in properties for name in required):
        raise SchemaError(f"{where}: 'required' must list declared properties")
    return schema


# -- schemas from Python signatures -----------------------------------------------------------
_SIMPLE: dict[Any, str] = {str: "string", int: "integer", float: "number", bool: "boolean"}
_ARG_HEADINGS = ("Args:", "Arguments:", "Parameters:")
#: "    name: text" or "    name (type): text", one indentation step in.
_ARG_LINE = re.compile(r"^ {1,4}(\w+)(?:\s*\([^)]*\))?:\s*(.*)$")


def _type_schema(tp: Any, where: str) -> dict[str, Any]:
    if tp in _SIMPLE:
        return {"type": _SIMPLE[tp]}
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is Literal:
        kinds = {_SIMPLE.get(type(arg)) for arg in args}
        if None in kinds or len(kinds) != 1:
            raise SchemaError(f"{where}: Literal values must all be str, int, float or bool")
        return {"type": kinds.pop(), "enum": list(args)}
    if origin is list:
        return (
            {"type": "array", "items": _type_schema(args[0], where)} if args else {"type": "array"}
        )
    if origin in (types.UnionType, typing.Union) and type(None) in args:
        rest = [arg for arg in args if arg is not type(None)]
        if len(rest) == 1:
            return _type_schema(rest[0], where)
    raise SchemaError(
        f"{where}: type {tp!r} is not supported (str, int, float, bool, Literal, list)"
    )


def _docstring_parts(doc: str) -> tuple[str, dict[str, str]]:
    """The summary of a docstring and its Google-style ``Args:`` descriptions."""
    lines = inspect.cleandoc(doc).splitlines()
    summary: list[str] = []
    for line in lines:
        if not line.strip():
            break
        summary.append(line.strip())
    params: dict[str, str] = {}
    heading = next((i for i, line in enumerate(lines) if line.strip() in _ARG_HEADINGS), None)
    if heading is not None:
        current: str | None = None
        for line in lines[heading + 1 :]:
            if line.strip() and not line[0].isspace():
                break  # The next section.
            match = _ARG_LINE.match(line)
            if match:
                current = match.group(1)
                params[current] = match.group(2).strip()
            elif line.strip() and current is not None:
                params[current] = f"{params[current]} {line.strip()}".strip()
    return " ".join(summary), params


def docstring_summary(func: Callable[..., Any]) -> str:
    """The first paragraph of ``func``'s docstring, on one line."""
    return _docstring_parts(inspect.getdoc(func) or "")[0]


def schema_from_callable(func: Callable[..., Any], where: str) -> tuple[str, dict[str, Any]]:
    """(description, parameters schema) from ``func``'s docstring and type hints."""
    try:
        hints = typing.get_type_hints(func)
    except Exception as exc:
        raise SchemaError(f"{where}: cannot read the type hints: {exc}") from None
    description, param_docs = _docstring_parts(inspect.getdoc(func) or "")
    properties: dict[str, Any] = {}
    required: list[str] = []
    for name, param in inspect.signature(func).parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        if name not in hints:
            raise SchemaError(f"{where}: parameter {name!r} has no type hint")
        prop = _type_schema(hints[name], f"{where}({name})")
        if name in param_docs:
            prop["description"] = param_docs[name]
        properties[name] = prop
        if param.default is inspect.Parameter.empty:
            required.append(name)
    schema = {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }
    return description, schema
