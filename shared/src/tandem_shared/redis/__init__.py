"""Everything Tandem keeps in Redis: the key schemes (`keys`), the one client per process (`client`), owner
leases (`lease`), the auto-pipeline (`pipeline`), the sync-state store (`state`) and the writer's idempotency
records (`idempotency`). Services reach Redis only through these modules."""
