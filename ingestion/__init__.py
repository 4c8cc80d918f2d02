"""How data arrives: the ingestion service, the simulator, and landing -> raw."""
