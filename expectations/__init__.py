"""Great Expectations suites, one per layer gate, and the gate runner."""
