"""Mailchimp-shaped API errors, shared by the pure rules and the HTTP layer."""

from dataclasses import dataclass, field

ERROR_DOC_URL = "https://mailchimp.com/developer/marketing/docs/errors/"
INVALID_RESOURCE_DETAIL = (
    "The resource submitted could not be validated. For field-specific details, see the 'errors' array."
)


@dataclass(frozen=True)
class FieldError:
    field: str
    message: str


@dataclass
class ApiError(Exception):
    status: int
    title: str
    detail: str
    errors: list[FieldError] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.status} {self.title}: {self.detail}"


def not_found() -> ApiError:
    return ApiError(404, "Resource Not Found", "The requested resource could not be found.")


def invalid_resource(detail: str = INVALID_RESOURCE_DETAIL, errors: list[FieldError] | None = None) -> ApiError:
    return ApiError(400, "Invalid Resource", detail, errors or [])


def member_exists(email: str) -> ApiError:
    return ApiError(
        400, "Member Exists", f"{email} is already a list member. Use PUT to insert or update list members."
    )


def forgotten(email: str) -> ApiError:
    return ApiError(
        400,
        "Forgotten Email Not Subscribed",
        f"{email} was permanently deleted and cannot be re-imported. "
        "The contact must re-subscribe to get back on the list.",
    )


def compliance_state(email: str) -> ApiError:
    return ApiError(
        400,
        "Member In Compliance State",
        f"{email} is in a compliance state due to unsubscribe, bounce, or compliance review and cannot be subscribed.",
    )


def email_change_refused(status: str) -> ApiError:
    """An email change of a member who is not subscribed (ibericode/mailchimp-user-sync #96, one 2017 report; the
    title is not in the report: "Invalid Resource" is an assumption, see ASSUMPTIONS.md)."""
    return ApiError(
        400,
        "Invalid Resource",
        f'This member\'s status is "{status}." You can only update email addresses for members with a status of '
        '"subscribed."',
    )


def cannot_archive() -> ApiError:
    """DELETE of a pending, cleaned or archived member (grouparoo fixtures; hitobito #1072)."""
    return ApiError(
        405,
        "Method Not Allowed",
        "This list member cannot be removed. Can not archive a contact that is bounced, pending or archived. "
        "See the Allow header for this resource's available methods.",
        headers={"Allow": "GET, PUT"},
    )
