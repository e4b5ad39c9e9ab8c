"""The web app (FastAPI): see radar.web.app.create_app."""

from __future__ import annotations


def create_app(engine=None):
    """radar.web.app.create_app, importable from the package without loading FastAPI at package import."""
    from radar.web.app import create_app as _create_app

    return _create_app(engine)
