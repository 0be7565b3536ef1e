"""Option values coerced without pydantic, for the plain types vecpipe's options use.

typer (0.29) coerces every option value, defaults included, through a pydantic ``TypeAdapter``
built per option: importing pydantic and building the adapters is a sixth of a second of every
command's start-up. Options typed ``str``, ``int``, ``float`` (with typer's ``min``/``max``) or an
``Enum`` are coerced here instead, with pydantic's lax rules for numbers written on a command line
and the same messages; anything else (paths, parsers, clamping) is left to typer, which builds its adapter only when the
option is given a value.
"""

from __future__ import annotations

import re
from enum import Enum
from typing import Any

#: what pydantic's lax mode takes as an integer / a number written as a string
_INT = re.compile(r"\s*[+-]?\d+(_\d+)*(\.0+)?\s*", re.ASCII)


class PlainParam:
    """The part of typer's ``RuntimeParam`` that typer calls: ``coerce`` (and ``_coerce_value``).
    ``kind`` None: a type left to typer, whose coercion is built only for a value given (an option
    left unset is None without it)."""

    def __init__(self, kind: type | None, info: Any, descriptor: Any = None) -> None:
        self.kind = kind
        self.info = info
        self.descriptor = descriptor
        self._typer: Any = None

    def coerce(self, value: Any, param: Any, ctx: Any) -> Any:
        many = bool(getattr(param, "multiple", False) or getattr(param, "nargs", 1) == -1)
        if value is None:
            return () if many else None
        if many and isinstance(value, str):
            from typer._click.exceptions import BadParameter

            raise BadParameter("Value must be an iterable.", ctx=ctx, param=param)
        return self._coerce_value(value, param=param, ctx=ctx)

    def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
        from typer._click.exceptions import BadParameter

        if self.kind is None:
            if self._typer is None:
                from typer._coercion import build_runtime_param

                self._typer = build_runtime_param(self.descriptor)
            return self._typer._coerce_value(value, param=param, ctx=ctx)

        try:
            return self._convert(value, ctx)
        except ValueError as exc:
            raise BadParameter(str(exc), ctx=ctx, param=param) from None

    def _convert(self, value: Any, ctx: Any) -> Any:
        kind = self.kind
        assert kind is not None
        if kind is list:  # list[str]: each value as a string
            items = value if isinstance(value, (list, tuple)) else [value]
            return [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in items]
        if kind is str:
            if isinstance(value, bytes):
                return value.decode("utf-8", "replace")
            return str(value)
        if issubclass(kind, Enum):
            from typer._param_types import coerce_cli_choice

            try:
                return coerce_cli_choice(value, choices=list(kind), case_sensitive=self.info.case_sensitive, ctx=ctx)
            except ValueError as exc:
                raise ValueError(f"Value error, {exc}") from None
        number: int | float
        if kind is int:
            if isinstance(value, bool) or not isinstance(value, (int, str)):
                raise ValueError("Input should be a valid integer")
            if isinstance(value, str):
                if not _INT.fullmatch(value):
                    raise ValueError("Input should be a valid integer, unable to parse string as an integer")
                value = int(value.strip().split(".")[0])
            number = value
        else:  # float
            if isinstance(value, bool) or not isinstance(value, (int, float, str)):
                raise ValueError("Input should be a valid number")
            try:
                if isinstance(value, str) and not value.isascii():
                    raise ValueError(value)
                number = float(value)
            except ValueError:
                raise ValueError("Input should be a valid number, unable to parse string as a number") from None
        low, high = self.info.min, self.info.max
        if high is not None and not number <= high:  # pydantic's order: a NaN fails this one first
            raise ValueError(f"Input should be less than or equal to {_bound(high)}")
        if low is not None and not number >= low:
            raise ValueError(f"Input should be greater than or equal to {_bound(low)}")
        return number


def _bound(x: float) -> str:
    """A bound as pydantic writes it: 1.0 as 1."""
    return str(int(x)) if isinstance(x, float) and x.is_integer() else str(x)


def plain_param(param: Any) -> PlainParam | None:
    """A :class:`PlainParam` for a typer option or argument of a plain type, else None."""
    from typing import get_args, get_origin

    desc = getattr(param, "type_descriptor", None)
    if desc is None:
        return None
    info = desc.parameter_info
    kind = desc.annotation
    if desc.file_annotation is not None or getattr(info, "parser", None) is not None or getattr(info, "clamp", False):
        return None
    if get_origin(kind) is list and get_args(kind) == (str,):
        return PlainParam(list, info)
    if getattr(param, "multiple", False) or getattr(param, "nargs", 1) != 1:
        return None
    if kind in (str, int, float) or (isinstance(kind, type) and issubclass(kind, Enum)):
        if kind is str and (getattr(info, "exists", False) or getattr(info, "path_type", None) is not None):
            return PlainParam(None, info, desc)
        return PlainParam(kind, info)
    return PlainParam(None, info, desc)
