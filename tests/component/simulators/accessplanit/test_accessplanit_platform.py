"""Auth, tokens, rate limiting, reference modules, schema help and the simulator's own controls."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from component.simulators.accessplanit.accessplanit_testkit import ADMIN_KEY, SimServer, new_user

TOKEN_FORM = {"grant_type": "password", "UserName": "demo.admin", "Password": "tandem-demo-admin-password"}


def test_health_needs_no_auth(sim: httpx.Client) -> None:
    assert sim.get("/_sim/health").json() == {"status": "ok"}


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer not-a-key"}, {"Authorization": f"Basic {ADMIN_KEY}"}, {"Authorization": "Bearer"}],
)
def test_missing_or_unknown_credentials_are_401(sim: httpx.Client, headers: dict[str, str]) -> None:
    response = sim.get("/api/v2/User", headers=headers)
    assert response.status_code == 401
    assert ADMIN_KEY not in response.text


def test_password_token_grant_acts_as_its_user(sim: httpx.Client) -> None:
    response = sim.post("/api/v2/Token", data=TOKEN_FORM)
    assert response.status_code == 200
    token = response.json()
    assert set(token) == {
        "access_token",
        "token_type",
        "expires_in",
        "refresh_token",
        "userID",
        "refresh_token_expires_in",
    }
    assert (token["token_type"], token["expires_in"], token["userID"]) == ("bearer", 3600, "900002")

    headers = {"Authorization": f"Bearer {token['access_token']}"}
    user = sim.post("/api/v2/User", headers=headers, json=new_user()).json()
    assert (user["UpdatedByID"], user["UpdatedByName"]) == ("900002", "Demo Admin")
    # A refresh token is not an access token.
    assert sim.get("/api/v2/User", headers={"Authorization": f"Bearer {token['refresh_token']}"}).status_code == 401


def test_token_grant_errors(sim: httpx.Client) -> None:
    wrong = sim.post("/api/v2/Token", data={**TOKEN_FORM, "Password": "guess"})
    assert (wrong.status_code, wrong.json()["error"]) == (400, "invalid_grant")
    refresh = sim.post("/api/v2/Token", data={"grant_type": "refresh_token", "refresh_token": "x"})
    assert (refresh.status_code, refresh.json()["error"]) == (400, "unsupported_grant_type")


def test_rate_limit_is_per_tenant_and_module(sim: httpx.Client, api: httpx.Client, admin: httpx.Client) -> None:
    sim.post("/_sim/controls", json={"rate_limit_per_window": 3}).raise_for_status()
    assert [api.get("/User").status_code for _ in range(2)] == [200, 200]
    assert admin.get("/User").status_code == 200  # another key of the same tenant counts too (assumption)

    limited = api.get("/User")
    assert (limited.status_code, limited.content) == (429, b"")
    assert int(limited.headers["Retry-After"]) >= 1
    assert api.get("/user/1").status_code == 429  # same module, any case
    assert admin.get("/User").status_code == 429  # every key and token of the tenant
    token = sim.post("/api/v2/Token", data=TOKEN_FORM).json()["access_token"]  # Token itself is not limited
    assert sim.get("/api/v2/User", headers={"Authorization": f"Bearer {token}"}).status_code == 429
    assert api.get("/Company").status_code == 200  # another module


def test_rate_limit_per_credential_is_a_switch(sim: httpx.Client, api: httpx.Client, admin: httpx.Client) -> None:
    controls = {"rate_limit_per_window": 2, "rate_limit_scope": "credential"}
    sim.post("/_sim/controls", json=controls).raise_for_status()
    assert [api.get("/User").status_code for _ in range(3)] == [200, 200, 429]
    assert admin.get("/User").status_code == 200  # another key has its own count


def test_an_injected_429_looks_exactly_like_a_real_one(sim: httpx.Client, api: httpx.Client) -> None:
    sim.post("/_sim/controls", json={"rate_limit_per_window": 1}).raise_for_status()
    api.get("/Company")
    real = api.get("/Company")
    sim.post("/_sim/reset").raise_for_status()
    sim.post("/_sim/controls", json={"faults": [{"status": 429, "count": 1, "retry_after": 7}]}).raise_for_status()
    injected = api.get("/Company")
    assert (real.status_code, real.content) == (injected.status_code, injected.content) == (429, b"")
    assert sorted(real.headers) == sorted(injected.headers)
    assert injected.headers["Retry-After"] == "7"


def test_token_accepts_lowercase_and_pascal_case_credentials(sim: httpx.Client) -> None:
    lower = {"grant_type": "password", "username": "demo.admin", "password": "tandem-demo-admin-password"}
    assert sim.post("/api/v2/Token", data=lower).json()["userID"] == "900002"
    assert sim.post("/api/v2/Token", data=TOKEN_FORM).json()["userID"] == "900002"
    wrong = sim.post("/api/v2/Token", data={**lower, "password": "guess"})
    assert wrong.status_code == 400


def test_company_and_custom_field_metadata(api: httpx.Client) -> None:
    companies = api.get("/Company").json()["results"]
    assert [(c["ID"], c["Name"], c["IsGuest"]) for c in companies] == [
        ("1", "Guest Account", True),
        ("2", "Acme Training Ltd", False),
    ]
    assert api.get("/Company/1").json()["IsGuest"] is True
    assert api.get("/Company/3").status_code == 404

    fields = {f["Name"]: f for f in api.get("/CustomFieldMetadata").json()["results"]}
    assert list(fields) == [
        "Mailchimp Company",
        "Mailchimp Birthday",
        "Newsletter Since",
        "Courses Attended",
        "VIP",
        "Region",
    ]
    assert (fields["Mailchimp Company"]["Type"], fields["Mailchimp Company"]["MaxLength"]) == ("Text", 255)
    assert (fields["Mailchimp Birthday"]["Type"], fields["Mailchimp Birthday"]["MaxLength"]) == ("Text", 5)
    assert [fields[n]["Type"] for n in ("Newsletter Since", "Courses Attended", "VIP")] == ["Date", "Number", "Boolean"]
    assert fields["Region"]["Options"] == ["North", "South", "East", "West"]


def test_schema_help_describes_user_fields(api: httpx.Client, admin: httpx.Client) -> None:
    base = str(api.base_url).removesuffix("/api/v2/")
    response = api.get(f"{base}/apihelp/v2/modules/user")
    assert response.status_code == 200
    schema = response.json()
    assert schema["Module"] == "User"
    fields = {f["Name"]: f for f in schema["Fields"]}
    assert fields["Surname"] == {
        "Name": "Surname",
        "Type": "string",
        "MaxLength": 40,
        "Mandatory": True,
        "Writable": True,
        "Format": None,
        "Options": None,
        "CustomField": False,
    }
    assert (fields["ID"]["Writable"], fields["UniqueID"]["Type"], fields["MarketingOptIn"]["Type"]) == (
        False,
        "guid",
        "bool",
    )
    assert (fields["DOB"]["Type"], fields["DOB"]["Format"], fields["DOB"]["Writable"]) == (
        "datetime",
        "YYYY-MM-DDTHH:MM:SS",
        True,
    )
    assert (fields["Phone"]["Type"], fields["Phone"]["Writable"]) == ("string", True)
    assert (fields["Title"]["Type"], fields["Title"]["Options"][:2]) == ("list", ["Mr", "Mrs"])
    assert (fields["Fullname"]["Writable"], fields["HasEmail"]["Writable"]) == (False, False)
    assert "Telephone" not in fields and "DateOfBirth" not in fields
    assert fields["CustomFields/Newsletter Since"]["Type"] == "datetime"
    assert fields["DateUpdated"]["Type"] == "datetime"
    assert fields["CustomFields"]["Type"] == "object"
    custom = fields["CustomFields/Courses Attended"]
    assert (custom["Type"], custom["CustomField"], custom["Writable"]) == ("int", True, False)
    admin_view = {f["Name"]: f for f in admin.get(f"{base}/apihelp/v2/modules/User").json()["Fields"]}
    assert admin_view["CustomFields/Courses Attended"]["Writable"] is True
    assert api.get(f"{base}/apihelp/v2/modules/Course").status_code == 404


def test_injected_status_faults_are_counted_down(sim: httpx.Client, api: httpx.Client) -> None:
    fault = {"status": 503, "count": 2, "method": "GET", "path_prefix": "/api/v2/user"}
    sim.post("/_sim/controls", json={"faults": [fault]}).raise_for_status()
    assert api.post("/User", json=new_user()).status_code == 201  # method does not match
    assert [api.get("/User").status_code for _ in range(3)] == [503, 503, 200]
    assert sim.get("/_sim/controls").json()["faults"] == []


def test_injected_429_and_permanent_fault_until_cleared(sim: httpx.Client, api: httpx.Client) -> None:
    sim.post("/_sim/controls", json={"faults": [{"status": 429}]}).raise_for_status()
    assert [api.get("/Company").status_code for _ in range(3)] == [429, 429, 429]
    assert sim.get("/_sim/health").status_code == 200  # /_sim is never faulted
    sim.post("/_sim/controls", json={"faults": []}).raise_for_status()
    assert api.get("/Company").status_code == 200


def test_injected_timeout_holds_the_request(sim: httpx.Client, api: httpx.Client) -> None:
    sim.post("/_sim/controls", json={"faults": [{"kind": "timeout", "count": 1}]}).raise_for_status()
    with pytest.raises(httpx.ReadTimeout):
        api.get("/User", timeout=0.3)
    sim.post("/_sim/controls", json={"faults": []}).raise_for_status()  # releases the held request
    assert api.get("/User").status_code == 200


def test_latency_delays_api_requests_but_not_sim_controls(sim: httpx.Client, api: httpx.Client) -> None:
    # A minute of latency against a 0.3 s client timeout: the outcome does not depend on machine speed.
    assert sim.post("/_sim/controls", json={"latency_ms": 60_000}).json()["latency_ms"] == 60_000
    with pytest.raises(httpx.ReadTimeout):
        api.get("/User", timeout=0.3)
    assert sim.post("/_sim/controls", json={"latency_ms": 0}).status_code == 200
    assert api.get("/User").status_code == 200
    assert sim.post("/_sim/controls", json={"latency_ms": -1}).status_code == 400


def test_stats_count_requests_per_route_and_status(sim: httpx.Client, api: httpx.Client) -> None:
    api.post("/User", json=new_user())
    api.get("/User/100")
    api.get("/user/101")
    stats = sim.get("/_sim/stats").json()
    rows = {(r["method"], r["route"], r["status"]): r["count"] for r in stats["requests"]}
    assert rows[("POST", "/api/v2/User", 201)] == 1
    assert rows[("GET", "/api/v2/User/{user_id}", 404)] == 2
    assert stats["total"] == sum(rows.values())


def test_reset_returns_to_the_seed(sim: httpx.Client, api: httpx.Client) -> None:
    old = api.post("/User", json=new_user()).json()
    sim.post("/_sim/controls", json={"webhooks_failing": True, "rate_limit_per_window": 1})
    sim.post("/_sim/reset").raise_for_status()
    assert api.get("/User").json()["results"] == []
    assert api.get("/SystemEventLog").json()["results"] == []
    assert sim.get("/_sim/controls").json()["webhooks_failing"] is False
    assert api.post("/User", json=new_user()).json()["ID"] != old["ID"]  # IDs are never reissued


def test_data_survives_a_restart(tmp_path: Path, sim_server: SimServer) -> None:
    settings = sim_server.settings.model_copy(update={"data_dir": tmp_path})
    headers = {"Authorization": "Bearer tandem-demo-integration-key"}
    with SimServer(settings) as first, httpx.Client(base_url=f"{first.base_url}/api/v2", headers=headers) as client:
        user = client.post("/User", json=new_user()).json()
        client.post("/Webhook", json={"Module": "User", "Events": ["created"], "TargetUrl": "http://127.0.0.1:9/x"})
    with SimServer(settings) as second, httpx.Client(base_url=f"{second.base_url}/api/v2", headers=headers) as client:
        assert client.get(f"/User/{user['ID']}").json() == user
        assert len(client.get("/Webhook").json()["results"]) == 1
        assert [e["Action"] for e in client.get("/SystemEventLog").json()["results"]] == ["Created"]
        later = client.put(f"/User/{user['ID']}", json={"JobTitle": "x"}).json()
        assert later["DateUpdated"] > user["DateUpdated"]
        assert client.post("/User", json=new_user()).json()["ID"] != user["ID"]


def test_controls_reject_unknown_names(sim: httpx.Client) -> None:
    response = sim.post("/_sim/controls", json={"webhook_failing": True})
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "webhook_failing"
