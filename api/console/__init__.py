"""The web console for merchandisers and analysts (``/console``): see :mod:`api.console.routes`."""

from api.console.routes import router

__all__ = ["router"]
