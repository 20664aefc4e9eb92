"""Helpers the tests share across components: start a real backend, a real PostgreSQL, free ports.

Import as ``from support.<module> import ...`` (pytest puts tests/ on sys.path).
"""
