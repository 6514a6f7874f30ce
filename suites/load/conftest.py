"""The load suite measures: its tests are bounded in requests and in seconds (LoadSpec)."""
