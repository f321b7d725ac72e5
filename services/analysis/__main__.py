"""``python -m services.analysis``."""

from __future__ import annotations

from services.analysis.server import main

raise SystemExit(main())
