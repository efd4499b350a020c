"""The product rules for instance configurations, each with the message an operator sees."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from tandem_shared.contracts import Direction, FieldMapping, InstanceConfig, Transform
from tandem_shared.instance_validation.problems import LiveSchemas, Problem
from tandem_shared.instance_validation.rules import validate_instance
from tandem_shared.instances import demo_instance
from tandem_shared.vendors.accessplanit.schema import AccessplanitFieldInfo, AccessplanitSchema
from tandem_shared.vendors.mailchimp.schema import MailchimpSchema, MergeFieldInfo
from tandem_shared.vendors.schema import Kind

BASE = [
    FieldMapping(mailchimp="FNAME", accessplanit="Forenames"),
    FieldMapping(mailchimp="LNAME", accessplanit="Surname"),
    FieldMapping(mailchimp="EMAIL", accessplanit="Email"),
]


def config(*extra: FieldMapping, mappings: list[FieldMapping] | None = None, **changes: Any) -> InstanceConfig:
    return demo_instance().model_copy(
        update={"mappings": mappings if mappings is not None else [*BASE, *extra], **changes}
    )


def mailchimp(**extra: MergeFieldInfo) -> MailchimpSchema:
    fields = {
        "FNAME": MergeFieldInfo("FNAME", "First Name", "text"),
        "LNAME": MergeFieldInfo("LNAME", "Last Name", "text"),
        "ADDRESS": MergeFieldInfo("ADDRESS", "Address", "address"),
        "PHONE": MergeFieldInfo("PHONE", "Phone Number", "phone"),
        "BIRTHDAY": MergeFieldInfo("BIRTHDAY", "Birthday", "birthday", options={"date_format": "MM/DD"}),
        "COMPANY": MergeFieldInfo("COMPANY", "Company", "text"),
        **extra,
    }
    return MailchimpSchema("a1b2c3d4e5", "Tandem Demo", fields)


def accessplanit(*extra: AccessplanitFieldInfo, account_found: bool = True) -> AccessplanitSchema:
    fields = [
        AccessplanitFieldInfo("Forenames", Kind.TEXT, 50, writable=True, mandatory=True),
        AccessplanitFieldInfo("Surname", Kind.TEXT, 40, writable=True, mandatory=True),
        AccessplanitFieldInfo("Email", Kind.TEXT, 255, writable=True),
        AccessplanitFieldInfo("Phone", Kind.TEXT, 50, writable=True),
        AccessplanitFieldInfo("DOB", Kind.DATE, writable=True),
        AccessplanitFieldInfo("MainCompanyName", Kind.TEXT, 255, writable=False),
        AccessplanitFieldInfo("custom:Mailchimp Company", Kind.TEXT, 255, writable=True),
        AccessplanitFieldInfo("custom:Mailchimp Birthday", Kind.TEXT, 5, writable=True),
        AccessplanitFieldInfo("custom:Courses Attended", Kind.NUMBER, writable=True),
        AccessplanitFieldInfo("custom:Region", Kind.CHOICE, writable=True, options=("North", "South")),
        *extra,
    ]
    accounts = {"1": "Guest Account"} if account_found else {"1": "Guest Account", "2": "Acme Training Ltd"}
    return AccessplanitSchema({f.name: f for f in fields}, accounts, account_found)


def live(**changes: Any) -> LiveSchemas:
    return LiveSchemas(mailchimp=changes.get("mc", mailchimp()), accessplanit=changes.get("ap", accessplanit()))


def errors(instance: InstanceConfig, schemas: LiveSchemas | None = None) -> list[Problem]:
    return validate_instance(instance, schemas).errors


def messages(instance: InstanceConfig, schemas: LiveSchemas | None = None) -> list[str]:
    return [str(p) for p in errors(instance, schemas)]


def test_the_demo_instance_is_valid_offline_and_against_its_schemas() -> None:
    assert validate_instance(demo_instance()).ok
    assert validate_instance(demo_instance(), live()).ok


# -- minimum mappings ------------------------------------------------------------------------------------------


def test_accessplanit_to_mailchimp_needs_fname_lname_and_email() -> None:
    instance = config(mappings=BASE[:2], direction=Direction.ACCESSPLANIT_TO_MAILCHIMP)
    assert messages(instance) == [
        "mappings: accessplanit → Mailchimp needs EMAIL mapped (the minimum is FNAME, LNAME, EMAIL); "
        "add {mailchimp: EMAIL, accessplanit: Email}"
    ]


def test_mailchimp_to_accessplanit_needs_fname_and_lname_and_email_is_implied() -> None:
    instance = config(mappings=[BASE[0]], direction=Direction.MAILCHIMP_TO_ACCESSPLANIT)
    assert messages(instance) == [
        "mappings: Mailchimp → accessplanit needs LNAME mapped (the minimum is FNAME, LNAME); "
        "add {mailchimp: LNAME, accessplanit: Surname}"
    ]


def test_a_mapping_restricted_to_the_other_direction_does_not_count_towards_the_minimum() -> None:
    lname_one_way = BASE[1].model_copy(update={"direction": Direction.MAILCHIMP_TO_ACCESSPLANIT})
    found = messages(config(mappings=[BASE[0], lname_one_way, BASE[2]]))
    assert len(found) == 1
    assert found[0].startswith("mappings: accessplanit → Mailchimp needs LNAME mapped")


def test_email_is_always_the_identity() -> None:
    wrong = config(mappings=[*BASE[:2], FieldMapping(mailchimp="EMAIL", accessplanit="custom:Work Email")])
    assert (
        "mappings[2].accessplanit: EMAIL is the contact's identity and maps to accessplanit Email only, not "
        "'custom:Work Email'; set accessplanit: Email"
    ) in messages(wrong)


# -- the Birthday rule -----------------------------------------------------------------------------------------


def test_mailchimp_birthday_cannot_fill_date_of_birth_and_the_fix_is_a_text_custom_field() -> None:
    instance = config(FieldMapping(mailchimp="BIRTHDAY", accessplanit="DOB"))
    for schemas in (None, live()):
        found = errors(instance, schemas)
        assert len(found) == 1
        assert found[0].field == "mappings[3]"
        assert found[0].message.startswith(
            "Mailchimp BIRTHDAY holds a birthday as MM/DD (no year), so it cannot fill accessplanit DOB "
            "(a full date with a year): Tandem would have to invent the year. Map it to a text custom field instead"
        )
        assert "'custom:Mailchimp Birthday'" in found[0].message


def test_a_date_of_birth_may_feed_the_mailchimp_birthday_one_way() -> None:
    one_way = FieldMapping(
        mailchimp="BIRTHDAY",
        accessplanit="DOB",
        direction=Direction.ACCESSPLANIT_TO_MAILCHIMP,
        transform=Transform.BIRTHDAY,
    )
    assert validate_instance(config(one_way), live()).ok


def test_phone_maps_to_accessplanit_phone_both_ways() -> None:
    mapping = FieldMapping(mailchimp="PHONE", accessplanit="Phone", transform=Transform.PHONE)
    assert validate_instance(config(mapping), live()).ok
    assert validate_instance(config(mapping)).ok


@pytest.mark.parametrize(("old", "real"), [("Telephone", "Phone"), ("DateOfBirth", "DOB")])
def test_the_names_no_accessplanit_source_has_are_refused_with_the_real_name(old: str, real: str) -> None:
    found = messages(config(FieldMapping(mailchimp="PHONE", accessplanit=old, transform=Transform.PHONE)))
    assert found == [
        f"mappings[3].accessplanit: accessplanit has no User field '{old}': the field is called '{real}' (as "
        f"accessplanit's own API client names it); set accessplanit: {real}"
    ]


def test_birthday_to_a_text_custom_field_is_what_the_seed_advises() -> None:
    mapping = FieldMapping(mailchimp="BIRTHDAY", accessplanit="custom:Mailchimp Birthday", transform=Transform.BIRTHDAY)
    assert validate_instance(config(mapping), live()).ok


# -- live schemas: names, types, lengths -----------------------------------------------------------------------


def test_an_unknown_merge_tag_is_named_with_a_suggestion() -> None:
    found = messages(config(FieldMapping(mailchimp="COMPNY", accessplanit="custom:Mailchimp Company")), live())
    assert found == [
        "mappings[3].mailchimp: merge tag 'COMPNY' does not exist in audience 'Tandem Demo' (a1b2c3d4e5); did you "
        "mean 'COMPANY'? — fix the tag or create the field in Mailchimp (Audience → Settings → Audience fields and "
        "merge tags)"
    ]


def test_an_unknown_accessplanit_field_or_custom_field_is_named() -> None:
    found = messages(
        config(
            FieldMapping(mailchimp="PHONE", accessplanit="Phnoe"),
            FieldMapping(mailchimp="COMPANY", accessplanit="custom:Employer"),
        ),
        live(),
    )
    assert found[0] == "mappings[3].accessplanit: accessplanit has no User field 'Phnoe'; did you mean 'Phone'?"
    assert found[1].startswith("mappings[4].accessplanit: accessplanit has no custom field 'Employer'; available: ")


def test_a_text_field_cannot_feed_a_number() -> None:
    mapping = FieldMapping(mailchimp="COMPANY", accessplanit="custom:Courses Attended")
    assert messages(config(mapping), live()) == [
        "mappings[3]: COMPANY → custom:Courses Attended (Mailchimp → accessplanit): a text field cannot feed a "
        "number: Mailchimp COMPANY is text, accessplanit custom:Courses Attended is a number; map a number field "
        "to it or choose a text field"
    ]


def test_numbers_from_mailchimp_need_the_number_transform() -> None:
    schemas = live(mc=mailchimp(COURSES=MergeFieldInfo("COURSES", "Courses", "number")))
    plain = FieldMapping(mailchimp="COURSES", accessplanit="custom:Courses Attended")
    assert messages(config(plain), schemas) == [
        "mappings[3]: COURSES → custom:Courses Attended (Mailchimp → accessplanit): Mailchimp sends numbers as "
        "text: add transform: number"
    ]
    assert validate_instance(config(plain.model_copy(update={"transform": Transform.NUMBER})), schemas).ok


def test_dates_need_the_date_transform() -> None:
    schemas = live(mc=mailchimp(JOINED=MergeFieldInfo("JOINED", "Joined", "date")))
    mapping = FieldMapping(mailchimp="JOINED", accessplanit="DOB")
    found = messages(config(mapping), schemas)
    assert len(found) == 2  # once per direction
    assert found[0].endswith(
        "accessplanit dates are ISO 8601 date-times (1990-03-28T00:00:00), Mailchimp's YYYY-MM-DD: add transform: date"
    )
    assert validate_instance(config(mapping.model_copy(update={"transform": Transform.DATE})), schemas).ok


def test_values_longer_than_the_target_allows_are_refused() -> None:
    short = AccessplanitFieldInfo("custom:Bday", Kind.TEXT, 3, writable=True)
    mapping = FieldMapping(
        mailchimp="BIRTHDAY",
        accessplanit="custom:Bday",
        transform=Transform.BIRTHDAY,
        direction=Direction.MAILCHIMP_TO_ACCESSPLANIT,
    )
    assert messages(config(mapping), live(ap=accessplanit(short))) == [
        "mappings[3]: BIRTHDAY → custom:Bday (Mailchimp → accessplanit): values are 5 characters long but "
        "accessplanit custom:Bday allows 3; make it longer"
    ]


def test_a_shorter_text_limit_is_a_warning_not_an_error() -> None:
    report = validate_instance(config(FieldMapping(mailchimp="COMPANY", accessplanit="Phone")), live())
    assert report.ok
    assert any(
        w.message.endswith("values longer than 50 characters are refused by accessplanit (Phone)")
        for w in report.warnings
    )


def test_a_read_only_field_cannot_receive_mailchimp_values() -> None:
    mapping = FieldMapping(mailchimp="COMPANY", accessplanit="MainCompanyName")
    assert messages(config(mapping), live()) == [
        "mappings[3].accessplanit: 'MainCompanyName' cannot be written through the API; choose a writable field, "
        "or set direction: accessplanit_to_mailchimp"
    ]
    one_way = mapping.model_copy(update={"direction": Direction.ACCESSPLANIT_TO_MAILCHIMP})
    assert validate_instance(config(one_way), live()).ok


def test_custom_fields_read_only_for_the_key_are_explained() -> None:
    locked = AccessplanitFieldInfo("custom:Mailchimp Company", Kind.TEXT, 255, writable=False)
    mapping = FieldMapping(mailchimp="COMPANY", accessplanit="custom:Mailchimp Company")
    [problem] = errors(config(mapping), live(ap=accessplanit(locked)))
    assert problem.field == "mappings[3].accessplanit"
    assert "custom fields are read-only for this API key" in problem.message


def test_a_required_merge_field_must_be_fed_from_accessplanit() -> None:
    schemas = live(mc=mailchimp(COMPANY=MergeFieldInfo("COMPANY", "Company", "text", required=True)))
    assert messages(config(), schemas) == [
        "mappings: Mailchimp requires COMPANY (Company) in audience 'Tandem Demo', so contacts Tandem creates "
        "without it are refused; map it from accessplanit or make it optional in Mailchimp"
    ]


def test_a_mandatory_custom_field_must_be_fed_from_mailchimp() -> None:
    mandatory = AccessplanitFieldInfo("custom:Region", Kind.CHOICE, writable=True, mandatory=True, options=("North",))
    found = messages(config(), live(ap=accessplanit(mandatory)))
    assert found == [
        "mappings: accessplanit requires custom field 'Region' on every user, so users created from Mailchimp are "
        "refused without it; map a Mailchimp field to 'custom:Region'"
    ]


def test_the_default_account_must_exist() -> None:
    assert messages(config(), live(ap=accessplanit(account_found=False))) == [
        "accessplanit.default_account_id: account '1' does not exist in accessplanit; accounts: 1 (Guest Account), "
        "2 (Acme Training Ltd)"
    ]


def test_users_from_mailchimp_need_a_default_account() -> None:
    instance = config(accessplanit=demo_instance().accessplanit.model_copy(update={"default_account_id": None}))
    assert messages(instance) == [
        "accessplanit.default_account_id: users created from Mailchimp need an account: set it to the id of your "
        "'Guest Account' (or whichever account new Mailchimp contacts should join)"
    ]


# -- structure --------------------------------------------------------------------------------------------------


def test_two_mappings_writing_the_same_field_are_refused() -> None:
    found = messages(config(FieldMapping(mailchimp="PHONE", accessplanit="Surname")), live())
    assert (
        "mappings[3].accessplanit: accessplanit Surname is already written by mappings[1] (Mailchimp → accessplanit); "
        "keep one of them or give them different directions"
    ) in found


def test_an_address_only_syncs_mailchimp_to_accessplanit() -> None:
    both_ways = FieldMapping(mailchimp="ADDRESS", accessplanit="custom:Mailchimp Company", transform=Transform.ADDRESS)
    assert (
        "mappings[3].direction: transform address turns Mailchimp's address into one line of text and cannot split "
        "it back; set direction: mailchimp_to_accessplanit"
    ) in messages(config(both_ways))
    one_way = both_ways.model_copy(update={"direction": Direction.MAILCHIMP_TO_ACCESSPLANIT})
    assert validate_instance(config(one_way), live()).ok
    plain = one_way.model_copy(update={"transform": None})
    assert messages(config(plain), live())[0].endswith(
        "ADDRESS is an address: add transform: address (to one line of text in accessplanit)"
    )


def test_custom_fields_are_written_with_the_custom_prefix() -> None:
    found = messages(config(FieldMapping(mailchimp="COMPANY", accessplanit="CustomFields/Mailchimp Company")))
    assert found == ["mappings[3].accessplanit: write custom fields as 'custom:Mailchimp Company'"]


def test_a_mapping_that_never_syncs_is_a_warning() -> None:
    report = validate_instance(
        config(
            FieldMapping(mailchimp="PHONE", accessplanit="Phone", direction=Direction.MAILCHIMP_TO_ACCESSPLANIT),
            direction=Direction.ACCESSPLANIT_TO_MAILCHIMP,
        )
    )
    assert report.ok
    assert [str(w) for w in report.warnings] == [
        "mappings[3].direction: PHONE ⇄ Phone is never synced: it is mailchimp_to_accessplanit but the instance "
        "syncs accessplanit_to_mailchimp; remove it or change its direction"
    ]


def test_every_error_is_reported_at_once() -> None:
    instance = config(
        mappings=[BASE[0], FieldMapping(mailchimp="BIRTHDAY", accessplanit="DOB")],
        accessplanit=demo_instance().accessplanit.model_copy(update={"default_account_id": None}),
    )
    fields = [p.field for p in errors(instance)]
    assert fields == ["mappings", "mappings", "accessplanit.default_account_id", "mappings[1]"]


@pytest.mark.parametrize("direction", list(Direction))
def test_the_minimum_mappings_suffice_for_every_direction(direction: Direction) -> None:
    assert validate_instance(config(direction=direction), live()).ok


@pytest.mark.parametrize(
    ("double_optin", "status_if_new", "warned"),
    [(True, "subscribed", True), (True, "pending", False), (False, "subscribed", False), (None, "subscribed", False)],
)
def test_subscribed_new_contacts_on_a_double_opt_in_audience_are_a_warning(
    double_optin: bool | None, status_if_new: str, warned: bool
) -> None:
    # Mailchimp's set-consent-correctly guide: read the audience's double_optin; `pending` is right there.
    base = config()
    instance = base.model_copy(update={"mailchimp": base.mailchimp.model_copy(update={"status_if_new": status_if_new})})
    schema = dataclasses.replace(mailchimp(), double_optin=double_optin)
    report = validate_instance(instance, LiveSchemas(mailchimp=schema))
    found = [p for p in report.warnings if p.field == "mailchimp.status_if_new"]
    assert report.ok
    if warned:
        assert [p.message for p in found] == [
            "audience 'Tandem Demo' (a1b2c3d4e5) uses double opt-in, but new contacts would be added as subscribed "
            "without the confirmation email; set status_if_new: pending unless they have confirmed elsewhere"
        ]
    else:
        assert found == []


def test_vendor_urls_off_the_vendors_hosts_are_errors_unless_named_for_development(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The services would send the instance's keys there (SSRF); `apply` refuses up front."""
    base = demo_instance()
    instance = config(
        accessplanit=base.accessplanit.model_copy(update={"base_url": "http://169.254.169.254/latest"}),
        mailchimp=base.mailchimp.model_copy(update={"api_base_url": "https://evil.example/3.0"}),
    )
    errors = {p.field for p in validate_instance(instance).errors}
    assert {"accessplanit.base_url", "mailchimp.api_base_url"} <= errors
    monkeypatch.setenv("TANDEM_DEVELOPMENT_VENDOR_HOSTS", "")
    assert "accessplanit.base_url" in {p.field for p in validate_instance(demo_instance()).errors}
    monkeypatch.setenv("TANDEM_DEVELOPMENT_VENDOR_HOSTS", "127.0.0.1")
    assert validate_instance(demo_instance()).ok
