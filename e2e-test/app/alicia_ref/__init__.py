"""The reference Alicia backend used by the e2e suite (replaceable by the real package)."""
