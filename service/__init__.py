"""VitalStream: one processing core for wearable telemetry on Kinesis, run by Lambda or a shard consumer."""
