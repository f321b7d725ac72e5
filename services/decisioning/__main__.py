"""``python -m services.decisioning``."""

from __future__ import annotations

from services.decisioning.server import main

raise SystemExit(main())
