"""Validation of the queue estimator (SPEC §4.1, §7) against an Eclipse SUMO toll plaza."""
