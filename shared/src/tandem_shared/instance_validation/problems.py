"""What instance validation reports, and the live schemas its rules read (as far as they could be read)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from tandem_shared.vendors.accessplanit.schema import AccessplanitSchema
from tandem_shared.vendors.mailchimp.schema import MailchimpSchema

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Problem:
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


@dataclass(frozen=True)
class ValidationReport:
    errors: list[Problem]
    warnings: list[Problem]

    @property
    def ok(self) -> bool:
        return not self.errors


@dataclass(frozen=True)
class LiveSchemas:
    mailchimp: MailchimpSchema | None = None
    accessplanit: AccessplanitSchema | None = None
    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
