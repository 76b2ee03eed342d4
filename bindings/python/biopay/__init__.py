"""biopay: biometric payment authentication anchored in trusted hardware.

The uniffi bindings of the Rust SDK (generated into ``biopay._native``),
re-exported here: ``PaymentVerifier`` for back ends; ``BiopayClient``,
``PlatformKeystore``, ``SimulatedTee`` and ``SimulatedVendor`` for devices and
tests. ``BiopayClient``'s ``register`` / ``authorize`` / ``deregister`` are
coroutines (``await`` them, or ``asyncio.run``); everything else is
synchronous. See bindings/README.md in the repository.
"""

from ._native.biopay import *  # noqa: F401,F403  (the API, with type hints)
from ._native.biopay import __all__  # noqa: F401
