"""The simulator's wiring, reachable from route handlers through ``request.app.state.sim``."""

from dataclasses import dataclass

from fastapi import Request

from mailchimp_sim.controls import Controls, Stats
from mailchimp_sim.service import AudienceService
from mailchimp_sim.settings import SimSettings
from mailchimp_sim.store import Store
from mailchimp_sim.webhooks import Dispatcher


@dataclass
class Sim:
    settings: SimSettings
    store: Store
    service: AudienceService
    dispatcher: Dispatcher
    controls: Controls
    stats: Stats


ACCOUNT_STATE_KEY = "account_id"


# ``async def``: FastAPI runs a plain ``def`` dependency in a worker thread, and that hop cost more than the request.
async def get_sim(request: Request) -> Sim:
    sim: Sim = request.app.state.sim
    return sim


def sim_and_account(request: Request) -> tuple[Sim, str]:
    """For /3.0 routes: the wiring and the account the gateway authenticated. Read from the request rather than
    through ``Depends``, whose per-request resolution cost about 5% of a member write."""
    sim: Sim = request.app.state.sim
    account: str = request.scope["state"][ACCOUNT_STATE_KEY]
    return sim, account
