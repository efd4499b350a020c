"""The writer's rules, pure: no Kafka, no Redis, no clock of their own. The service (`tandem_writer.delivery`)
does the I/O and asks these what to do."""
