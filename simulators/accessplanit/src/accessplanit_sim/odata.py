"""The OData query subset accessplanit v2 accepts ($filter, $select, $orderby, $top, $skip, $count). Pure.

`$filter` grammar (keywords case-insensitive):

    expr       := or
    or         := and ("or" and)*
    and        := unary ("and" unary)*
    unary      := "not" unary | primary
    primary    := "(" expr ")" | function | comparison
    function   := ("contains" | "startswith" | "endswith") "(" FIELD "," STRING ")"
    comparison := FIELD OP literal | literal OP FIELD          OP := eq | ne | gt | ge | lt | le
    literal    := STRING | NUMBER | DATE | DATETIME | true | false | null

Strings are single-quoted with '' for a quote. Dates may be written bare (2026-01-31, 2026-01-31T07:00:00Z) or quoted;
against a date or datetime field a quoted literal is parsed as a date, so `DateUpdated gt '2026-…Z'` compares instants.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from .fields import QueryType

Record = Mapping[str, Any]
Predicate = Callable[[Record], bool]

COMPARISONS = ("eq", "ne", "gt", "ge", "lt", "le")
FUNCTIONS = ("contains", "startswith", "endswith")
QUERY_OPTIONS = ("$filter", "$select", "$orderby", "$top", "$skip", "$count")

_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,7})?)?(Z|[+-]\d{2}:\d{2})?")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_NUMBER = re.compile(r"-?\d+(\.\d+)?")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_/]*")
_IDENT_CHAR = re.compile(r"[A-Za-z0-9_]")


class ODataError(ValueError):
    def __init__(self, option: str, message: str) -> None:
        super().__init__(message)
        self.option = option


def _filter_error(message: str) -> ODataError:
    return ODataError("$filter", f"Invalid $filter: {message}")


# -- lexer ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Token:
    kind: str  # ident | string | number | date | datetime | ( | ) | , | end
    text: str
    pos: int
    value: Any = None


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        char = text[pos]
        if char.isspace():
            pos += 1
        elif char in "(),":
            tokens.append(Token(char, char, pos))
            pos += 1
        elif char == "'":
            string, end = _read_string(text, pos)
            tokens.append(Token("string", text[pos:end], pos, string))
            pos = end
        elif temporal := _bare_temporal(text, pos):
            kind, end, moment = temporal
            tokens.append(Token(kind, text[pos:end], pos, moment))
            pos = end
        elif (match_number := _NUMBER.match(text, pos)) and not _continues_word(text, match_number.end()):
            literal = match_number.group()
            number = float(literal) if "." in literal else int(literal)
            tokens.append(Token("number", literal, pos, number))
            pos = match_number.end()
        elif match_ident := _IDENT.match(text, pos):
            tokens.append(Token("ident", match_ident.group(), pos))
            pos = match_ident.end()
        else:
            raise _filter_error(f"unexpected character {char!r} at position {pos}.")
    tokens.append(Token("end", "", len(text)))
    return tokens


def _read_string(text: str, start: int) -> tuple[str, int]:
    chars: list[str] = []
    pos = start + 1
    while pos < len(text):
        if text[pos] == "'":
            if text.startswith("''", pos):
                chars.append("'")
                pos += 2
                continue
            return "".join(chars), pos + 1
        chars.append(text[pos])
        pos += 1
    raise _filter_error(f"the string starting at position {start} has no closing quote.")


def _continues_word(text: str, pos: int) -> bool:
    return pos < len(text) and _IDENT_CHAR.match(text[pos]) is not None


def _bare_temporal(text: str, pos: int) -> tuple[str, int, date | datetime] | None:
    for kind, pattern in (("datetime", _DATETIME), ("date", _DATE)):
        match = pattern.match(text, pos)
        if match and not _continues_word(text, match.end()):
            value = parse_iso(match.group(), kind)
            if value is None:
                raise _filter_error(f"{match.group()!r} at position {pos} is not a valid {kind}.")
            return kind, match.end(), value
    return None


def parse_iso(text: str, kind: str) -> date | datetime | None:
    """ISO 8601 date or datetime; a datetime without an offset is taken as UTC."""
    try:
        if kind == "date":
            return date.fromisoformat(text) if _DATE.fullmatch(text) else None
        if not _DATETIME.fullmatch(text):
            return None
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# -- AST and parser ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Literal:
    kind: str  # string | number | date | datetime | bool | null
    value: Any


@dataclass(frozen=True)
class Compare:
    field: str
    op: str
    literal: Literal


@dataclass(frozen=True)
class Call:
    function: str
    field: str
    literal: Literal


@dataclass(frozen=True)
class And:
    left: Expr
    right: Expr


@dataclass(frozen=True)
class Or:
    left: Expr
    right: Expr


@dataclass(frozen=True)
class Not:
    operand: Expr


Expr = Compare | Call | And | Or | Not

_FLIPPED = {"eq": "eq", "ne": "ne", "gt": "lt", "ge": "le", "lt": "gt", "le": "ge"}


def parse_filter(text: str) -> Expr:
    if not text.strip():
        raise _filter_error("the expression is empty.")
    return _Parser(tokenize(text)).parse()


class _Parser:
    def __init__(self, tokens: list[Token]) -> None:
        self._tokens = tokens
        self._index = 0

    def parse(self) -> Expr:
        expr = self._or()
        token = self._peek()
        if token.kind != "end":
            raise self._unexpected(token, "'and', 'or' or the end of the expression")
        return expr

    def _peek(self) -> Token:
        return self._tokens[self._index]

    def _next(self) -> Token:
        token = self._tokens[self._index]
        self._index += 1
        return token

    def _keyword(self, *words: str) -> str | None:
        token = self._peek()
        if token.kind == "ident" and token.text.lower() in words:
            self._index += 1
            return token.text.lower()
        return None

    def _expect(self, kind: str, wanted: str) -> Token:
        token = self._next()
        if token.kind != kind:
            raise self._unexpected(token, wanted)
        return token

    @staticmethod
    def _unexpected(token: Token, wanted: str) -> ODataError:
        found = "the end of the expression" if token.kind == "end" else repr(token.text)
        return _filter_error(f"expected {wanted} at position {token.pos}, found {found}.")

    def _or(self) -> Expr:
        expr = self._and()
        while self._keyword("or"):
            expr = Or(expr, self._and())
        return expr

    def _and(self) -> Expr:
        expr = self._unary()
        while self._keyword("and"):
            expr = And(expr, self._unary())
        return expr

    def _unary(self) -> Expr:
        if self._keyword("not"):
            return Not(self._unary())
        return self._primary()

    def _primary(self) -> Expr:
        token = self._peek()
        if token.kind == "(":
            self._next()
            expr = self._or()
            self._expect(")", "')'")
            return expr
        if token.kind == "ident" and token.text.lower() in FUNCTIONS and self._tokens[self._index + 1].kind == "(":
            return self._call()
        if token.kind == "ident" and not _is_literal_word(token):
            field = self._next().text
            return Compare(field, self._operator(), self._literal())
        literal = self._literal()
        op = self._operator()
        field_token = self._expect("ident", "a field name")
        return Compare(field_token.text, _FLIPPED[op], literal)

    def _call(self) -> Call:
        function = self._next().text.lower()
        self._expect("(", "'('")
        field = self._expect("ident", f"a field name as the first argument of {function}()").text
        self._expect(",", "','")
        literal_token = self._expect("string", f"a quoted string as the second argument of {function}()")
        self._expect(")", "')'")
        return Call(function, field, Literal("string", literal_token.value))

    def _operator(self) -> str:
        token = self._next()
        if token.kind == "ident" and token.text.lower() in COMPARISONS:
            return token.text.lower()
        raise self._unexpected(token, "a comparison operator (eq, ne, gt, ge, lt, le)")

    def _literal(self) -> Literal:
        token = self._next()
        if token.kind in ("string", "number", "date", "datetime"):
            return Literal(token.kind, token.value)
        if token.kind == "ident" and _is_literal_word(token):
            word = token.text.lower()
            return Literal("null", None) if word == "null" else Literal("bool", word == "true")
        raise self._unexpected(token, "a value (a quoted string, number, date, true, false or null)")


def _is_literal_word(token: Token) -> bool:
    return token.text.lower() in ("true", "false", "null")


# -- evaluation ----------------------------------------------------------------------------------------------


def compile_filter(
    expr: Expr, field_types: Mapping[str, QueryType], case_insensitive: frozenset[str] = frozenset()
) -> Predicate:
    """Type-check `expr` against the module's fields and return a predicate over records."""
    match expr:
        case And(left, right):
            lhs, rhs = (
                compile_filter(left, field_types, case_insensitive),
                compile_filter(right, field_types, case_insensitive),
            )
            return lambda r: lhs(r) and rhs(r)
        case Or(left, right):
            lhs, rhs = (
                compile_filter(left, field_types, case_insensitive),
                compile_filter(right, field_types, case_insensitive),
            )
            return lambda r: lhs(r) or rhs(r)
        case Not(operand):
            inner = compile_filter(operand, field_types, case_insensitive)
            return lambda r: not inner(r)
        case Compare(field, op, literal):
            return _compile_compare(field, op, literal, field_types, case_insensitive)
        case Call(function, field, literal):
            return _compile_call(function, field, literal, field_types, case_insensitive)
    raise TypeError(expr)


def _field_type(field: str, field_types: Mapping[str, QueryType]) -> QueryType:
    kind = field_types.get(field)
    if kind is None:
        raise _filter_error(f"unknown field '{field}'.")
    if kind in ("object", "list"):
        raise _filter_error(f"'{field}' cannot be filtered on.")
    return kind


def _folds(field: str, kind: QueryType, case_insensitive: frozenset[str]) -> bool:
    return kind == "guid" or (kind == "string" and field in case_insensitive)


def _compile_compare(
    field: str, op: str, literal: Literal, field_types: Mapping[str, QueryType], case_insensitive: frozenset[str]
) -> Predicate:
    kind = _field_type(field, field_types)
    fold = _folds(field, kind, case_insensitive)
    if literal.kind == "null":
        if op not in ("eq", "ne"):
            raise _filter_error(f"null can only be compared with eq or ne (got '{op}').")
        return (lambda r: r.get(field) is None) if op == "eq" else (lambda r: r.get(field) is not None)
    wanted = _coerce_literal(field, kind, literal)
    if fold:
        wanted = wanted.lower()

    def predicate(record: Record) -> bool:
        value = record_value(kind, record.get(field))
        if value is None:
            return op == "ne"
        if fold:
            value = value.lower()
        return _compare(op, value, wanted)

    return predicate


def _compare(op: str, value: Any, wanted: Any) -> bool:
    match op:
        case "eq":
            return bool(value == wanted)
        case "ne":
            return bool(value != wanted)
        case "gt":
            return bool(value > wanted)
        case "ge":
            return bool(value >= wanted)
        case "lt":
            return bool(value < wanted)
        case _:
            return bool(value <= wanted)


def _compile_call(
    function: str,
    field: str,
    literal: Literal,
    field_types: Mapping[str, QueryType],
    case_insensitive: frozenset[str],
) -> Predicate:
    kind = _field_type(field, field_types)
    if kind not in ("string", "guid", "id"):
        raise _filter_error(f"{function}() needs a text field; '{field}' is {kind}.")
    fold = _folds(field, kind, case_insensitive)
    wanted: str = literal.value.lower() if fold else literal.value
    test: Callable[[str], bool] = {
        "contains": lambda v: wanted in v,
        "startswith": lambda v: v.startswith(wanted),
        "endswith": lambda v: v.endswith(wanted),
    }[function]

    def predicate(record: Record) -> bool:
        value = record.get(field)
        if not isinstance(value, str):
            return False
        return test(value.lower() if fold else value)

    return predicate


def _coerce_literal(field: str, kind: QueryType, literal: Literal) -> Any:
    """The literal as a value of the field's type, or a 400 explaining the mismatch."""
    value = literal.value
    converted: Any = None
    if kind in ("string", "guid"):
        if literal.kind == "string":
            converted = value
        elif literal.kind == "number":
            converted = str(value)
    elif kind == "id":  # `ID eq 123` and `ID eq '123'` both mean the record with ID "123"
        if literal.kind == "number" and isinstance(value, int):
            converted = value
        elif literal.kind == "string" and value.isdigit():
            converted = int(value)
    elif kind == "int":
        if literal.kind == "number" and isinstance(value, int):
            converted = value
        elif literal.kind == "string" and re.fullmatch(r"-?\d+", value):
            converted = int(value)
    elif kind == "bool":
        if literal.kind == "bool":
            converted = value
        elif literal.kind == "string" and value.lower() in ("true", "false"):
            converted = value.lower() == "true"
    elif kind == "date":
        if literal.kind == "date":
            converted = value
        elif literal.kind == "string":
            converted = parse_iso(value, "date") or _parse_dmy(value)
    elif kind == "datetime":
        if literal.kind == "datetime":
            converted = value
        elif literal.kind == "date":
            converted = datetime(value.year, value.month, value.day, tzinfo=UTC)
        elif literal.kind == "string":
            converted = parse_iso(value, "datetime") or _date_as_datetime(parse_iso(value, "date"))
    if converted is None:
        shown = repr(value) if literal.kind == "string" else str(value).lower()
        raise _filter_error(f"{shown} is not a valid {kind} value for '{field}'.")
    return converted


def _parse_dmy(text: str) -> date | None:
    try:
        return datetime.strptime(text, "%d/%m/%Y").date() if re.fullmatch(r"\d{2}/\d{2}/\d{4}", text) else None
    except ValueError:
        return None


def _date_as_datetime(value: date | datetime | None) -> datetime | None:
    return None if value is None else datetime(value.year, value.month, value.day, tzinfo=UTC)


def record_value(kind: QueryType, raw: Any) -> Any:
    """A stored value in comparable form: dates and datetimes are stored as ISO 8601 text, IDs as digits."""
    if raw is None or (raw == "" and kind in ("date", "datetime")):
        return None
    if kind == "date":
        return parse_iso(raw[:10], "date") if isinstance(raw, str) else None
    if kind == "datetime":
        return parse_iso(raw, "datetime") if isinstance(raw, str) else None
    if kind == "id":
        return int(raw) if isinstance(raw, str) and raw.isdigit() else None
    return raw


# -- $select, $orderby, paging -------------------------------------------------------------------------------


def parse_select(text: str, field_types: Mapping[str, QueryType]) -> list[str]:
    names = [name.strip() for name in text.split(",")]
    if not all(names):
        raise ODataError("$select", "Invalid $select: empty field name.")
    if names == ["*"]:
        return list(field_types)
    unknown = [n for n in names if n not in field_types]
    if unknown:
        raise ODataError("$select", f"Invalid $select: unknown field(s) {', '.join(unknown)}.")
    return list(dict.fromkeys(names))


def parse_orderby(text: str, field_types: Mapping[str, QueryType]) -> list[tuple[str, bool]]:
    """`Surname desc, Forenames` → [("Surname", True), ("Forenames", False)] (name, descending)."""
    keys = []
    for clause in text.split(","):
        words = clause.split()
        if not words or len(words) > 2 or (len(words) == 2 and words[1].lower() not in ("asc", "desc")):
            raise ODataError("$orderby", f"Invalid $orderby clause {clause.strip()!r}; use 'Field [asc|desc]'.")
        name = words[0]
        kind = field_types.get(name)
        if kind is None or kind in ("object", "list"):
            raise ODataError("$orderby", f"Invalid $orderby: cannot order by '{name}'.")
        keys.append((name, len(words) == 2 and words[1].lower() == "desc"))
    return keys


def sort_records(
    records: Sequence[Record], keys: list[tuple[str, bool]], field_types: Mapping[str, QueryType]
) -> list[Record]:
    ordered = list(records)
    # Stable sorts applied from the last key to the first give a multi-key order; nulls sort first ascending.
    for name, descending in reversed(keys):
        kind = field_types[name]

        def key(record: Record, name: str = name, kind: QueryType = kind) -> tuple[bool, Any]:
            value = record_value(kind, record.get(name))
            return (value is not None, value if value is not None else 0)

        ordered.sort(key=key, reverse=descending)
    return ordered


Sorter = Callable[[Sequence[Record], list[tuple[str, bool]], Mapping[str, QueryType]], Sequence[Record]]


class SortCache:
    """Each `$orderby` of one collection sorted once per version of the collection: paging through a listing then
    costs each page its page, not a sort of every record (50,000 users read a page at a time sorted them all for
    every page). The cached orders are read, never changed."""

    def __init__(self) -> None:
        self._version: object = None
        self._orders: dict[tuple[tuple[str, bool], ...], Sequence[Record]] = {}

    def sorter(self, version: object) -> Sorter:
        """`sort_records` for the records as they are at `version` (any other version drops what was cached)."""
        if version != self._version:
            self._version, self._orders = version, {}
        orders = self._orders

        def sort(records: Sequence[Record], keys: list[tuple[str, bool]], types: Mapping[str, QueryType]) -> Any:
            order = tuple(keys)
            if order not in orders:
                orders[order] = sort_records(records, keys, types)
            return orders[order]

        return sort


def _non_negative_int(option: str, text: str) -> int:
    if not text.strip().isdigit():
        raise ODataError(option, f"Invalid {option}: expected a non-negative whole number, got {text!r}.")
    return int(text)


def apply_query(
    records: Sequence[Record],
    field_types: Mapping[str, QueryType],
    params: Mapping[str, str],
    *,
    top_default: int,
    top_max: int,
    case_insensitive: frozenset[str] = frozenset(),
    sort: Sorter = sort_records,
) -> dict[str, Any]:
    """Run the query options in OData order: filter, count, orderby, skip, top, select. `records` are not changed:
    the page answered is made of copies."""
    unsupported = [k for k in params if k.startswith("$") and k not in QUERY_OPTIONS]
    if unsupported:
        raise ODataError(unsupported[0], f"The query option {unsupported[0]} is not supported.")

    predicate = None
    if (text := params.get("$filter")) is not None:
        predicate = compile_filter(parse_filter(text), field_types, case_insensitive)

    count_text = params.get("$count", "false").lower()
    if count_text not in ("true", "false"):
        raise ODataError("$count", "Invalid $count: use true or false.")

    # Sorted before filtering (the sorts are stable: the same records in the same order as filtered then sorted),
    # so that `sort` may answer an order it sorted before.
    ordered = records
    if (text := params.get("$orderby")) is not None:
        ordered = sort(records, parse_orderby(text, field_types), field_types)
    selected = ordered if predicate is None else [r for r in ordered if predicate(r)]

    skip = _non_negative_int("$skip", params["$skip"]) if "$skip" in params else 0
    if params.get("$top", "").strip() == "-1":
        # "No limit", as accessplanit's demo client sends it (Constants/PaginationOptions.cs); the simulator still
        # answers at most top_max rows (its own cap, an assumption: a real tenant's is unknown).
        top = top_max
    else:
        top = _non_negative_int("$top", params["$top"]) if "$top" in params else top_default
    if top > top_max:
        raise ODataError("$top", f"Invalid $top: the maximum is {top_max}.")
    page = selected[skip : skip + top]

    if (text := params.get("$select")) is not None:
        names = parse_select(text, field_types)
        page = [{n: r.get(n) for n in names} for r in page]
    else:
        page = [dict(r) for r in page]

    body: dict[str, Any] = {"results": list(page)}
    if count_text == "true":
        body["count"] = len(selected)
    return body
