#!/bin/bash
# The one Kafka tool docker-compose.yml's healthcheck runs.
exec java -Xmx128m -cp '/opt/kafka/libs/*' org.apache.kafka.tools.BrokerApiVersionsCommand "$@"
