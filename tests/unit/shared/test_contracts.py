from __future__ import annotations

import pytest
from pydantic import ValidationError

from tandem_shared.contact_hash import contact_hash
from tandem_shared.contracts import (
    TOPICS,
    ContactIdentity,
    Direction,
    FieldMapping,
    Flow,
    message_key,
    subscriber_hash,
)
from tandem_shared.contracts.topics import CHANGES, COMMANDS, COMMANDS_DLQ
from tandem_shared.instances import demo_instance


def test_subscriber_hash_is_md5_of_the_lowercased_trimmed_address() -> None:
    assert subscriber_hash(" Urist.McVankab@Freddiesjokes.com ") == "62eeb292278cc15f5817cb78f7790b08"


def test_contact_key_prefers_the_accessplanit_user_then_the_address_before_a_change() -> None:
    assert ContactIdentity(accessplanit_user_id="9", email="a@x.io").contact_key == "ap:9"
    assert ContactIdentity(email="New@x.io", old_email="Old@X.io").contact_key == f"mc:{contact_hash('old@x.io')}"
    assert ContactIdentity(email="A@x.io").contact_key == f"mc:{contact_hash('a@x.io')}"
    assert message_key("demo", "ap:9") == "demo:ap:9"


def test_topics_a_record_moves_between_have_the_same_partition_count() -> None:
    partitions = {t.name: t.partitions for t in TOPICS}
    assert partitions[CHANGES] == partitions[COMMANDS] == partitions[COMMANDS_DLQ]


def test_direction_filters_flows() -> None:
    assert Direction.BOTH.allows(Flow.MAILCHIMP_TO_ACCESSPLANIT)
    assert Direction.ACCESSPLANIT_TO_MAILCHIMP.allows(Flow.ACCESSPLANIT_TO_MAILCHIMP)
    assert not Direction.ACCESSPLANIT_TO_MAILCHIMP.allows(Flow.MAILCHIMP_TO_ACCESSPLANIT)
    assert Flow.ACCESSPLANIT_TO_MAILCHIMP.label == "accessplanit → Mailchimp"


def test_instance_config_refuses_a_literal_secret() -> None:
    data = demo_instance().model_dump()
    data["mailchimp"]["api_key"] = "0123456789abcdef0123456789abcdef-us6"
    with pytest.raises(ValidationError, match="secret must be a reference"):
        type(demo_instance()).model_validate(data)


def test_mappings_for_a_flow_respect_per_mapping_direction() -> None:
    instance = demo_instance().model_copy(
        update={
            "mappings": [
                *demo_instance().mappings,
                FieldMapping(mailchimp="MOBILE", accessplanit="Mobile", direction=Direction.MAILCHIMP_TO_ACCESSPLANIT),
            ]
        }
    )
    assert "MOBILE" not in {m.mailchimp for m in instance.mappings_for(Flow.ACCESSPLANIT_TO_MAILCHIMP)}
    assert "MOBILE" in {m.mailchimp for m in instance.mappings_for(Flow.MAILCHIMP_TO_ACCESSPLANIT)}
