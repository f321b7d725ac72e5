"""``python -m services.catalog``."""

from __future__ import annotations

from services.catalog.server import main

raise SystemExit(main())
