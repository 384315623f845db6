"""The tools' arguments: their JSON schemas, and one-line errors when a call gets them wrong.

The schemas (``SymbolArg``, ``HoursArg`` ...) only *describe* the allowed values: pydantic
passes every value through (``Any``) so that the Python API validates it and a bad value gets
the same message as in a notebook. What pydantic still decides — an argument missing, or one
the tool does not have — would reach the client as pydantic's multi-line dump with a link;
:class:`ToolServer` answers those with one line naming the argument and what is allowed.
"""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp.types import CallToolResult, InputRequiredResult
from pydantic import ValidationError, WithJsonSchema

from tradelab.config import DEFAULT_WINDOW_HOURS, MAX_WINDOW_HOURS, MIN_WINDOW_HOURS

__all__ = [
    "DaysArg",
    "EndArg",
    "HoursArg",
    "SessionArg",
    "StartArg",
    "SymbolArg",
    "TickArg",
    "ToolServer",
    "argument_problem",
]

# --- input schemas ----------------------------------------------------------------------------
# The Python API validates (and upper-cases symbols); pydantic only passes values through, so a
# bad value gets tradelab's own message. The JSON schema still states the allowed values.

SymbolArg = Annotated[
    Any,
    WithJsonSchema(
        {
            "type": "string",
            "pattern": "^[A-Za-z0-9]{2,20}$",
            "description": (
                "Binance spot symbol, base asset followed by quote asset, e.g. 'BTCUSDT' or "
                "'ETHUSDT'. 2-20 letters or digits; lower case is accepted and upper-cased."
            ),
            "examples": ["BTCUSDT", "ETHUSDT"],
        }
    ),
]
HoursArg = Annotated[
    Any,
    WithJsonSchema(
        {
            "type": "number",
            "minimum": MIN_WINDOW_HOURS,
            "maximum": MAX_WINDOW_HOURS,
            "default": DEFAULT_WINDOW_HOURS,
            "description": (
                f"Length of the window in hours, ending now: {MIN_WINDOW_HOURS} to "
                f"{MAX_WINDOW_HOURS} (7 days, the retention period). Default "
                f"{DEFAULT_WINDOW_HOURS}. Leave it out "
                "when giving start/end."
            ),
        }
    ),
]
TickArg = Annotated[
    Any,
    WithJsonSchema(
        {
            "anyOf": [{"type": "number", "exclusiveMinimum": 0}, {"type": "null"}],
            "default": None,
            "description": (
                "Exchange price tick the row size is a multiple of; leave null to use the "
                "symbol's tick (0.01 for BTCUSDT and ETHUSDT)."
            ),
        }
    ),
]

_TIME = (
    "an ISO-8601 UTC time such as '2024-08-08', '2024-08-08T23:54:00Z' or "
    "'2024-08-09T02:00+02:00' (no zone = UTC), or unix milliseconds"
)
StartArg = Annotated[
    Any,
    WithJsonSchema(
        {
            "anyOf": [{"type": "string"}, {"type": "integer", "minimum": 0}, {"type": "null"}],
            "default": None,
            "description": (
                f"Start of a fixed range instead of duration_hours: {_TIME}. Use it for "
                "history such as imported recordings; leave duration_hours out then."
            ),
        }
    ),
]
EndArg = Annotated[
    Any,
    WithJsonSchema(
        {
            "anyOf": [{"type": "string"}, {"type": "integer", "minimum": 0}, {"type": "null"}],
            "default": None,
            "description": f"End of the range (exclusive; default now): {_TIME}.",
        }
    ),
]
DaysArg = Annotated[
    Any,
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer", "minimum": 1, "maximum": 7}, {"type": "null"}],
            "default": None,
            "description": (
                "The last N UTC days, today included (1 = today so far; default 1 when no "
                "start is given). Give either days or start/end."
            ),
        }
    ),
]
SessionArg = Annotated[
    Any,
    WithJsonSchema(
        {
            "type": "string",
            "default": "utc-day",
            "description": (
                "How to split into sessions: 'utc-day' (default), 'asia' (00:00-09:00 UTC), "
                "'london' (07:00-16:00), 'new-york' (13:00-22:00) or UTC hours 'HH:MM-HH:MM'."
            ),
            "examples": ["utc-day", "london", "08:00-16:30"],
        }
    ),
]


# --- one-line argument errors ----------------------------------------------------------------


def _allowed(schema: dict[str, Any]) -> str:
    required = set(schema.get("required", ()))
    names = [f"{n} (required)" if n in required else n for n in schema.get("properties", {})]
    return ", ".join(names) if names else "none"


def argument_problem(schema: dict[str, Any], arguments: dict[str, Any]) -> str | None:
    """What is wrong with the *names* of ``arguments`` for a tool whose input schema is
    ``schema``, in one line — a required argument missing, or one the tool does not take — or
    ``None``. Values are the Python API's to judge."""
    props: dict[str, Any] = schema.get("properties", {})
    unknown = sorted(set(arguments) - set(props))
    if unknown:
        names = ", ".join(repr(n) for n in unknown)
        plural = "s" if len(unknown) > 1 else ""
        return f"unknown argument{plural} {names}; the arguments are {_allowed(schema)}"
    for name in schema.get("required", ()):
        if name not in arguments:
            about = " ".join(str(props.get(name, {}).get("description", "")).split())
            return f"the argument {name!r} is missing" + (f": {about}" if about else "")
    return None


class ToolServer(MCPServer):
    """An :class:`~mcp.server.mcpserver.MCPServer` whose tools answer a missing or unknown
    argument with one line (:func:`argument_problem`) instead of pydantic's dump.

    The check runs before the SDK validates (an unknown argument would otherwise be dropped
    silently: a typo such as ``duration_hour`` gave a 24-hour answer to a 2-hour question), and
    a :class:`pydantic.ValidationError` the SDK still raises is rewritten the same way.
    """

    _schemas: dict[str, dict[str, Any]] | None = None

    async def _schema(self, name: str) -> dict[str, Any] | None:
        if self._schemas is None:
            self._schemas = {t.name: dict(t.input_schema) for t in await self.list_tools()}
        return self._schemas.get(name)

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[Any, Any] | None = None
    ) -> CallToolResult | InputRequiredResult:
        """Check the argument names against the tool's schema, then call it (the SDK's
        :meth:`~mcp.server.mcpserver.MCPServer.call_tool`)."""
        schema = await self._schema(name)
        if schema is not None:
            problem = argument_problem(schema, arguments)
            if problem is not None:
                raise ToolError(f"Error executing tool {name}: {problem}")
        try:
            result = await super().call_tool(name, arguments, context)
        except UnexpectedToolError:
            raise
        except ToolError as exc:
            cause = exc.__cause__
            if schema is None or not isinstance(cause, ValidationError):
                raise
            fields = ", ".join(
                sorted({".".join(str(p) for p in e["loc"]) or "arguments" for e in cause.errors()})
            )
            raise ToolError(
                f"Error executing tool {name}: the argument(s) {fields} are not usable; the "
                f"arguments are {_allowed(schema)}"
            ) from cause
        return result
