"""Derived metrics (asset group `metrics`): computed in the warehouse with SQL from the raw report tables."""
