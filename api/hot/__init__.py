"""The quote path's in-memory state, refreshed in the background.

Nothing here is read from the database while a request waits: each holder keeps its
value in memory and a :class:`~api.hot.refresher.Refresher` thread re-reads it.

- :mod:`api.hot.catalog`: products and segments.
- :mod:`api.hot.prices`: per-SKU daily price aggregates (anchor, 30-day low).
- :mod:`api.hot.offer_book`: active promotions, their running totals, and this worker's
  leases on capped budgets and redemption caps.
- :mod:`api.hot.sticky`: this worker's recent decisions per customer (sticky quotes).
"""
