"""The analytics layer: the event store and what answers from it (export, metrics, deletion,
retention). The contract is ANALYTICS.md; `store.open_store` gives the configured engine behind
one small interface, so that nothing above it knows which engine answers.
"""
