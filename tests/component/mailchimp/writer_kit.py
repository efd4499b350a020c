"""The writer's Mailchimp instance against the simulator: its API key read from the environment, as in production."""

from __future__ import annotations

from typing import Any

from tandem_shared.contracts import InstanceConfig
from tandem_shared.instances import demo_instance

KEY_VAR = "TANDEM_TEST_MAILCHIMP_KEY"
WRONG_KEY_VAR = "TANDEM_TEST_MAILCHIMP_WRONG_KEY"


def make_instance(base_url: str, **mailchimp: Any) -> InstanceConfig:
    base = demo_instance()
    connection = base.mailchimp.model_copy(
        update={"api_key": f"env:{KEY_VAR}", "api_base_url": f"{base_url}/3.0", **mailchimp}
    )
    return base.model_copy(update={"id": "writer-test", "mailchimp": connection})
