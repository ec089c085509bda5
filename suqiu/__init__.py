"""Suqiu (诉求): an event-sourced backend for government enterprise-service platforms."""

__version__ = "0.1.0"
