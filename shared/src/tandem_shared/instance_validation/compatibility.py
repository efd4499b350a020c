"""Can values of one field be written to another, with a mapping's transform? (pure; the type rules of validation)"""

from __future__ import annotations

from dataclasses import dataclass

from tandem_shared.contracts import Flow, Transform
from tandem_shared.instance_validation.problems import Severity
from tandem_shared.vendors.schema import Kind


@dataclass(frozen=True)
class Side:
    system: str  # "Mailchimp" | "accessplanit"
    name: str
    kind: Kind
    max_length: int | None
    choices: tuple[str, ...] | None


def _fixed_length(kind: Kind, transform: Transform | None, target: str) -> int | None:
    if kind is Kind.BIRTHDAY or transform is Transform.BIRTHDAY:
        return 5
    if kind is Kind.DATE:
        # Tandem writes accessplanit dates as ISO 8601 date-times (YYYY-MM-DDT00:00:00), Mailchimp's as YYYY-MM-DD.
        return 19 if target == "accessplanit" else 10
    return None


def pair_problems(flow: Flow, transform: Transform | None, src: Side, dst: Side) -> list[tuple[Severity, str]]:
    """Can values of `src` be written to `dst` (with this transform)?"""
    s, d = src.kind, dst.kind
    text_like = (Kind.TEXT, Kind.PHONE, Kind.CHOICE)
    found: list[tuple[Severity, str]] = []

    def error(message: str) -> None:
        found.append(("error", message))

    if Kind.OTHER in (s, d):
        error(f"{src.system} {src.name} or {dst.system} {dst.name} is not a field Tandem can sync")
        return found
    if transform is None:
        if s is Kind.ADDRESS:
            error(f"{src.name} is an address: add transform: address (to one line of text in accessplanit)")
        elif d is Kind.ADDRESS:
            error(f"{dst.name} needs an address in parts; sync it Mailchimp → accessplanit with transform: address")
        elif d is Kind.BIRTHDAY:
            error(f"{dst.name} takes MM/DD: add transform: birthday")
        elif s is Kind.DATE and d is Kind.DATE:
            error(
                "accessplanit dates are ISO 8601 date-times (1990-03-28T00:00:00), Mailchimp's YYYY-MM-DD: "
                "add transform: date"
            )
        elif d is Kind.DATE:
            error(f"{dst.name} is a date: map a date to it (with transform: date)")
        elif d is Kind.NUMBER and s in (*text_like, Kind.BIRTHDAY, Kind.BOOL):
            error(
                f"a text field cannot feed a number: {src.system} {src.name} is text, {dst.system} {dst.name} is "
                "a number; map a number field to it or choose a text field"
            )
        elif d is Kind.NUMBER and flow is Flow.MAILCHIMP_TO_ACCESSPLANIT:
            error("Mailchimp sends numbers as text: add transform: number")
        elif d is Kind.BOOL and s is not Kind.BOOL:
            error(f"{dst.system} {dst.name} is true/false; only a true/false field can feed it")
    elif transform is Transform.DATE:
        if s not in (Kind.DATE, Kind.TEXT) or d not in (Kind.DATE, Kind.TEXT) or Kind.DATE not in (s, d):
            error("transform date needs a date on one side and a date or text field on the other")
    elif transform is Transform.BIRTHDAY:
        mc, ap = (dst, src) if flow is Flow.ACCESSPLANIT_TO_MAILCHIMP else (src, dst)
        ap_ok = ap.kind is Kind.TEXT or (ap.kind is Kind.DATE and flow is Flow.ACCESSPLANIT_TO_MAILCHIMP)
        if mc.kind not in (Kind.BIRTHDAY, Kind.TEXT) or not ap_ok:
            error("transform birthday maps a Mailchimp birthday (MM/DD) to an accessplanit text field holding MM/DD")
    elif transform is Transform.PHONE:
        if s not in (*text_like, Kind.NUMBER) or d not in text_like:
            error("transform phone maps phone numbers between text (or phone) fields")
    elif transform is Transform.ADDRESS:
        if s is not Kind.ADDRESS or d is not Kind.TEXT:
            error("transform address maps Mailchimp's ADDRESS to an accessplanit text field")
    elif transform is Transform.NUMBER and (s is not Kind.NUMBER or d not in (Kind.NUMBER, Kind.TEXT)):
        if d is Kind.NUMBER:
            error(
                f"a text field cannot feed a number: {src.system} {src.name} is text, {dst.system} {dst.name} is "
                "a number; map a number field to it or choose a text field"
            )
        else:
            error("transform number maps number fields")
    if found:
        return found

    if d is Kind.CHOICE and dst.choices is not None:
        extra = [c for c in (src.choices or ()) if c not in dst.choices]
        if src.choices is None:
            found.append(("warning", f"values must be one of {', '.join(dst.choices)}; others are refused"))
        elif extra:
            found.append(("warning", f"{', '.join(extra)} are not choices of {dst.name}; such values are refused"))

    limit = dst.max_length
    if limit is not None and d in (*text_like, Kind.NUMBER):
        fixed = _fixed_length(s, transform, dst.system)
        if fixed is not None and fixed > limit:
            error(f"values are {fixed} characters long but {dst.system} {dst.name} allows {limit}; make it longer")
        elif fixed is None and src.max_length is not None and src.max_length > limit and s is not Kind.NUMBER:
            if dst.system == "Mailchimp":
                found.append(("warning", f"values longer than {limit} bytes are cut by Mailchimp"))
            else:
                found.append(
                    ("warning", f"values longer than {limit} characters are refused by accessplanit ({dst.name})")
                )
    return found
