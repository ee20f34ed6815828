"""Benchmark decontamination: n-gram overlap against protected benchmark items, with an audit trail."""
