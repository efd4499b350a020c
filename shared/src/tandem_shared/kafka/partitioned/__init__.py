"""The partitioned consumer: partitions side by side, each in order, per-partition commits of exactly what its
strategy has finished. `consumer` is the poll/commit/rebalance loop, `strategy` the protocol it drives per
partition, `keyed` the strategy with per-key concurrency, `buffer` that strategy's waiting records."""

from tandem_shared.kafka.partitioned.buffer import PartitionBuffer
from tandem_shared.kafka.partitioned.consumer import (
    ConsumerClient,
    ConsumerOptions,
    PartitionedConsumer,
    consumer_options,
)
from tandem_shared.kafka.partitioned.keyed import Due, Fold, Handler, KeyedStrategy
from tandem_shared.kafka.partitioned.records import InboundRecord, inbound
from tandem_shared.kafka.partitioned.strategy import ProcessingStrategy, StrategyFactory

__all__ = [
    "ConsumerClient",
    "ConsumerOptions",
    "Due",
    "Fold",
    "Handler",
    "InboundRecord",
    "KeyedStrategy",
    "PartitionBuffer",
    "PartitionedConsumer",
    "ProcessingStrategy",
    "StrategyFactory",
    "consumer_options",
    "inbound",
]
