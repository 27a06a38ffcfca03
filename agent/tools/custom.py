"""Operator-written tools: Python callables named in the profile as ``module:function``.

They are imported once, when the agent starts, so a typo fails the start-up (exit status 2)
rather than a live call. Async functions run on the event loop; plain functions run in a small
thread pool of their own, so a slow or blocking one can never stall the media or the SIP
stack. A sync function that outlives its time limit keeps its thread until it returns (Python
cannot stop a thread): the model is told it timed out all the same.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import inspect
import json
import sys
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from agent.config import ConfigError, CustomToolSettings
from agent.tools.registry import TOOL_NAME, Tool
from agent.tools.schema import (
    SchemaError,
    check_parameters_schema,
    docstring_summary,
    schema_from_callable,
)

#: Threads for sync custom tools, shared by every call of the process.
_MAX_THREADS = 4
_executor: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(_MAX_THREADS, thread_name_prefix="custom-tool")
    return _executor


def _import(target: str, python_path: Iterable[str], where: str) -> Callable[..., Any]:
    for entry in python_path:
        folder = str(Path(entry).resolve())
        if folder not in sys.path:
            sys.path.insert(0, folder)
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise ConfigError(f"{where}: cannot import {module_name!r}: {exc}") from None
    func: Any = module
    for part in attr.split("."):
        func = getattr(func, part, None)
        if func is None:
            raise ConfigError(f"{where}: {module_name!r} has no {attr!r}")
    if not callable(func):
        raise ConfigError(f"{where}: {target!r} is not callable")
    found: Callable[..., Any] = func
    return found


def load_custom_tool(spec: CustomToolSettings, python_path: Iterable[str], where: str) -> Tool:
    """The :class:`Tool` for one ``[[tools.custom]]`` entry; ConfigError when unusable."""
    func = _import(spec.function, python_path, where)
    name = spec.name or getattr(func, "__name__", "")
    if not TOOL_NAME.fullmatch(name):
        raise ConfigError(f"{where}.name: {name!r} is not a valid tool name ([A-Za-z0-9_-])")
    try:
        if spec.parameters:
            try:
                declared = json.loads(spec.parameters)
            except ValueError as exc:
                raise ConfigError(f"{where}.parameters: not valid JSON: {exc}") from None
            parameters = check_parameters_schema(declared, f"{where}.parameters")
            derived_description = docstring_summary(func)
        else:
            derived_description, parameters = schema_from_callable(func, where)
    except SchemaError as exc:
        hint = "" if spec.parameters else "; or give the schema in 'parameters'"
        raise ConfigError(f"{exc}{hint}") from None
    description = spec.description or derived_description
    if not description:
        raise ConfigError(f"{where}: {name} needs a docstring or a description")
    return Tool(name, description, parameters, _handler(func), source="custom")


def _handler(func: Callable[..., Any]) -> Callable[[dict[str, Any]], Any]:
    if inspect.iscoroutinefunction(func):

        async def run_async(args: dict[str, Any]) -> Any:
            return await func(**args)

        return run_async

    async def run_sync(args: dict[str, Any]) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(_pool(), functools.partial(func, **args))

    return run_sync
