"""Conformance kit and synthetic data for plugin authors."""
