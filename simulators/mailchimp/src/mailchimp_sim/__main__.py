"""``python -m mailchimp_sim``: serve the simulator with uvicorn on the configured host and port."""

import uvicorn

from mailchimp_sim.app import create_app
from mailchimp_sim.settings import SimSettings


def main() -> None:
    settings = SimSettings()
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        timeout_graceful_shutdown=int(settings.uvicorn_graceful_shutdown_s) or None,
        access_log=settings.access_log,
        # C HTTP parser: h11 (pure Python) took a sixth of the simulator's CPU per request.
        http="httptools",
    )


if __name__ == "__main__":
    main()
