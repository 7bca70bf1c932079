"""Celery-side helpers for ably-bridge: the app factory, tasks and stream consumers.

Empty for now: the worker helpers land with their own issue.
"""
