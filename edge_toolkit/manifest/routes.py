"""IoT Edge hub routes: `FROM <source> [WHERE <condition>] INTO <sink>`, parsed into values. Pure."""

from __future__ import annotations

import re
from dataclasses import dataclass

_ROUTE = re.compile(
    r"^\s*FROM\s+(?P<source>\S+)\s+(?:WHERE\s+(?P<where>.+?)\s+)?INTO\s+(?P<sink>.+?)\s*$", re.I | re.S
)
_MODULE_SOURCE = re.compile(r"^/messages/modules/(?P<module>[^/]+)(?:/outputs/(?P<output>[^/]+)|/\*)?$")
_SINK = re.compile(
    r'^BrokeredEndpoint\(\s*"/modules/(?P<module>[^/"]+)/inputs/(?P<input>[^/"]+)"\s*\)$', re.I
)
_ANY_SOURCES = {"/*", "/messages/*", "/messages/modules/*", "/twinChangeNotifications"}


@dataclass(frozen=True)
class Route:
    """A parsed route. `source_module` / `sink_module` are None for `/messages/*` and `$upstream`."""

    source: str
    condition: str | None
    sink: str
    source_module: str | None
    source_output: str | None  # None or "*" means every output
    sink_module: str | None
    sink_input: str | None


class RouteSyntaxError(ValueError):
    pass


def parse(text: str) -> Route:
    match = _ROUTE.match(text)
    if match is None:
        raise RouteSyntaxError("expected 'FROM <source> [WHERE <condition>] INTO <sink>'")
    source, sink = match.group("source"), match.group("sink")
    source_module = source_output = None
    if source not in _ANY_SOURCES:
        module_match = _MODULE_SOURCE.match(source)
        if module_match is None:
            raise RouteSyntaxError(
                f"source {source!r} is not one of /messages/*, /messages/modules/<module>/*, "
                "/messages/modules/<module>/outputs/<output|*>, /twinChangeNotifications"
            )
        source_module, source_output = module_match.group("module"), module_match.group("output")
    sink_module = sink_input = None
    if sink != "$upstream":
        sink_match = _SINK.match(sink)
        if sink_match is None:
            raise RouteSyntaxError(
                f'sink {sink!r} is not $upstream or BrokeredEndpoint("/modules/<module>/inputs/<input>")'
            )
        sink_module, sink_input = sink_match.group("module"), sink_match.group("input")
    return Route(source, match.group("where"), sink, source_module, source_output, sink_module, sink_input)
