"""Faust app, topics and agents: decode, route, call detectors, emit."""
