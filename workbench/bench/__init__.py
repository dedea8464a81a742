"""Benchmarks that print figures, each run side by side with the peer it is compared to.

``python -m workbench.bench NAME`` runs ``workbench.bench.NAME.main()``; ``all`` runs every one.
Speed targets live here, never in tests.
"""
