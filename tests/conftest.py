"""Test-session settings: a private kernel cache directory, hypothesis profile."""

from __future__ import annotations

import os
import tempfile

from hypothesis import settings

# Tests never touch the user's ~/.cache; subprocess tests set their own directory.
os.environ.setdefault("LAMINA_CACHE_DIR", tempfile.mkdtemp(prefix="lamina-test-cache-"))

settings.register_profile("lamina", max_examples=30, deadline=None)
settings.load_profile("lamina")
