"""Tests of `factory train` (trainers/)."""
