"""Scrub checks: one module per rule family, each a pure vectorised function of a CheckContext."""
