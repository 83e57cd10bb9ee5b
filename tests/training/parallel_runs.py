"""Names shared by tests/training/run_on_8_devices.py and the test that reads its results (the
script must not be imported by a test: it fixes the device count when it is imported)."""

# Each mode once, weights sharded, and accumulation: the runs with a NaN step injected.
NAN_STEP_RUNS = ("one_device", "jit_fsdp4", "shard_map", "pmap", "shard_map_accum2")
