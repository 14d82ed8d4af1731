"""Reading one integer column of a query: Tortoise types ``values_list(..., flat=True)`` as a
list of tuples, whatever ``flat`` says; this says what it is."""

from __future__ import annotations

from typing import Any, cast

from tortoise.queryset import QuerySet


async def int_column(query: QuerySet[Any], field: str) -> list[int]:
    """The integer ``field`` of every row of ``query``, in the query's order."""
    return cast(list[int], await query.values_list(field, flat=True))
