"""Facts about the Atlassian Marketplace that both `settings` and `api/` need, so neither imports the other.

Only plain values live here: importing this module imports nothing else of the package.
"""

from __future__ import annotations

DEFAULT_BASE_URL = "https://api.atlassian.com/marketplace"
# The longest wait between two status reads of an export a run drives itself
# (MARKETPLACE_EXPORT_POLL_INTERVAL's live default). The reads start a second apart and double up to it
# (`api/export_job_model.py`, `ExportPolicy.poll_delay`), so a quick export is read within seconds whatever
# this is; it only bounds how often a long export is read.
DEFAULT_EXPORT_POLL_INTERVAL = 30.0
