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


# Dependencies are ``async def`` on purpose: FastAPI runs a plain ``def`` dependency in a worker thread, and that
# hop per request cost more than the request itself.
async def get_sim(request: Request) -> Sim:
    sim: Sim = request.app.state.sim
    return sim


async def account_id(request: Request) -> str:
    """Set by the gateway middleware once the API key checked out."""
    value: str = request.state.account_id
    return value
