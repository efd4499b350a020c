"""`python -m accessplanit_sim`: serve the simulator on the configured loopback host and port."""

from __future__ import annotations

import uvicorn

from .app import create_app
from .settings import SimSettings


def main() -> None:
    settings = SimSettings()
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port)


if __name__ == "__main__":
    main()
