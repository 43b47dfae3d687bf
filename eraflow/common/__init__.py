"""What every layer uses.

Errors, the retry policy, progress, the time grid and ranges, PostgreSQL helpers, memory
release, and command lines from pydantic models.
"""
