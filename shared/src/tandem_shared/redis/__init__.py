"""Everything Tandem keeps in Redis: the key schemes (`keys`), the one client per process (`client`), owner
leases (`lease`), the auto-pipeline (`pipeline`), Lua scripts sent by name (`scripts`), the sync-state store
(`state`, rules in `tandem_shared.sync.rules`), held changes (`held`) and the writer's idempotency records
(`idempotency`). Services reach Redis only through these modules and the vendor limits built on them
(`tandem_shared.concurrency`, `tandem_shared.ratelimit`)."""
