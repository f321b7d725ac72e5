"""``python -m services.assignment``."""

from __future__ import annotations

from services.assignment.server import main

raise SystemExit(main())
