"""Tests of the Kling simulator (local/kling_local/sim)."""
