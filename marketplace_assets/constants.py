"""Facts about the Atlassian Marketplace that both `settings` and `api/` need, so neither imports the other.

Only plain values live here: importing this module imports nothing else of the package.
"""

from __future__ import annotations

DEFAULT_BASE_URL = "https://api.atlassian.com/marketplace"
